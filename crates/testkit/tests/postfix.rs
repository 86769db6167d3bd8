//! The harness against a real Postfix: delivery, relay refusal, policy wiring (dead, REJECT,
//! HOLD, changed at run time), independent instances, cleanup by PID.
//!
//! These tests need root and Debian's postfix and swaks; without them they fail (never skip).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allowgate_testkit::{Error, Mail, Postfix, PostfixConfig};

const WAIT: Duration = Duration::from_secs(15);

fn client() -> std::net::IpAddr {
    "203.0.113.9".parse().unwrap()
}

/// Whether process `pid` still runs (a zombie does not).
fn running(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X') | None)
    })
}

/// Processes whose session is `sid` (Postfix's master and its daemons).
fn session(sid: i64) -> Vec<i64> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i64>().ok())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map_or(vec![], |(_, r)| r.split_whitespace().collect());
                fields.get(3) == Some(&sid.to_string().as_str()) && fields[0] != "Z"
            })
        })
        .collect()
}

/// A minimal Postfix policy service: answers every request with `action`, records requests.
struct PolicyServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl PolicyServer {
    fn start(action: &'static str) -> PolicyServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        // Detached threads: they end with the test process.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let seen = Arc::clone(&seen);
                std::thread::spawn(move || serve(stream, action, &seen));
            }
        });
        PolicyServer { addr, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, action: &str, seen: &Mutex<Vec<String>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut request = String::new();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        if line.is_empty() {
            seen.lock().unwrap().push(std::mem::take(&mut request));
            if writer
                .write_all(format!("action={action}\n\n").as_bytes())
                .is_err()
            {
                return;
            }
        } else {
            request.push_str(&line);
            request.push('\n');
        }
    }
}

#[test]
fn delivers_mail_sent_through_xclient_to_the_sink() {
    let started = Instant::now();
    let postfix = Postfix::require(PostfixConfig::default());
    eprintln!("started in {:?}", started.elapsed());

    let mail = Mail::new("alice@sender.test", ["bob@example.test"])
        .client(client())
        .helo("mx.sender.test")
        .header("X-Test", "one")
        .header("X-Test", "two")
        .body("hello\n.dot line\n");
    let sent = postfix.send(&mail);
    eprintln!("sent in {:?}", sent.elapsed);
    assert_eq!(sent.exit_code, Some(0), "{sent}");
    assert_eq!(sent.xclient.as_ref().map(|r| r.code), Some(220), "{sent}");
    assert_eq!(sent.rcpt_reply().map(|r| r.code), Some(250), "{sent}");
    assert!(sent.is_queued(), "{sent}");
    assert!(sent.rejection().is_none(), "{sent}");

    let delivered = postfix.wait_delivered(1, WAIT);
    eprintln!("delivered after {:?}", started.elapsed());
    assert_eq!(delivered.len(), 1, "{}", postfix.diagnostics());
    let message = &delivered[0];
    assert_eq!(message.mail_from, "alice@sender.test");
    assert_eq!(message.rcpt_to, ["bob@example.test"]);
    assert_eq!(message.queue_id(), sent.queue_id());
    assert_eq!(message.header("Subject"), Some("allowgate test"));
    assert_eq!(message.header_all("x-test"), ["one", "two"]);
    let received = message.header("Received").unwrap();
    assert!(
        received.starts_with("from mx.sender.test (unknown [203.0.113.9])"),
        "{received}"
    );
    assert_eq!(message.body, "hello\n.dot line\n");
    // The maillog is the instance's own and names the XCLIENT address.
    assert!(
        postfix
            .wait_for_log("status=sent", WAIT)
            .is_some_and(|l| l.contains("to=<bob@example.test>")),
        "{}",
        postfix.diagnostics()
    );
    assert!(postfix.maillog().contains("unknown[203.0.113.9]"));
}

#[test]
fn headers_and_bodies_arrive_as_sent() {
    let postfix = Postfix::require(PostfixConfig::default());
    let bodies = [
        "..two dots\n.\nend\n",
        "blank line last\n\n",
        "",
        "no newline",
    ];
    for (n, body) in bodies.iter().enumerate() {
        let mail = Mail::new("", ["bob@example.test"])
            .header("X-N", n.to_string())
            .header("X-Folded", "first\n\tsecond")
            .body(*body);
        let sent = postfix.send(&mail);
        assert!(sent.is_queued(), "{sent}");
    }
    let mut delivered = postfix.wait_delivered(bodies.len(), WAIT);
    assert_eq!(delivered.len(), bodies.len(), "{}", postfix.diagnostics());
    delivered.sort_by_key(|m| m.header("X-N").unwrap().parse::<usize>().unwrap());
    let got: Vec<&str> = delivered.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(
        got,
        [
            "..two dots\n.\nend\n",
            "blank line last\n\n",
            "",
            "no newline\n"
        ]
    );
    for message in &delivered {
        assert_eq!(message.mail_from, "", "the null sender");
        assert_eq!(message.header("From"), Some("<>"));
        assert_eq!(message.header("X-Folded"), Some("first\tsecond"));
    }
}

#[test]
fn a_foreign_domain_is_refused_at_rcpt_loopback_is_not_trusted() {
    let postfix = Postfix::require(PostfixConfig::default());
    // Neither from a foreign address nor from loopback itself (no XCLIENT).
    for mail in [
        Mail::new("alice@sender.test", ["evil@foreign.test"]).client(client()),
        Mail::new("alice@sender.test", ["evil@foreign.test"]),
    ] {
        let sent = postfix.send(&mail);
        let reply = sent.rcpt_reply().unwrap_or_else(|| panic!("{sent}"));
        assert_eq!(reply.code, 554, "{sent}");
        assert_eq!(reply.enhanced.as_deref(), Some("5.7.1"), "{sent}");
        assert!(reply.text.contains("Relay access denied"), "{sent}");
        assert_eq!(sent.exit_code, Some(24), "{sent}");
        assert!(!sent.is_queued());
        assert_eq!(sent.rejection(), Some(reply));
    }
    // One good and one foreign recipient: the mail goes to the good one only.
    let sent = postfix.send(
        &Mail::new(
            "alice@sender.test",
            ["bob@example.test", "evil@foreign.test"],
        )
        .client(client()),
    );
    assert_eq!(sent.rcpt.len(), 2, "{sent}");
    assert_eq!(sent.rcpt[1].reply.code, 554, "{sent}");
    assert!(sent.is_queued(), "{sent}");
    let delivered = postfix.wait_delivered(1, WAIT);
    assert_eq!(delivered.len(), 1, "{}", postfix.diagnostics());
    assert_eq!(delivered[0].rcpt_to, ["bob@example.test"]);
}

#[test]
fn mail_flows_when_nothing_listens_at_the_policy_address() {
    // A port that was free a moment ago: nothing listens there.
    let dead: SocketAddr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let postfix = Postfix::require(PostfixConfig::default().with_policy(dead));
    let sent = postfix.send(&Mail::new("alice@sender.test", ["bob@example.test"]).client(client()));
    eprintln!("sent with a dead policy service in {:?}", sent.elapsed);
    assert!(sent.is_queued(), "{sent}");
    // Two checks (RCPT, END-OF-MESSAGE), each two connection attempts 1 s apart.
    assert!(sent.elapsed < Duration::from_secs(6), "{sent}");
    assert_eq!(
        postfix.wait_delivered(1, WAIT).len(),
        1,
        "{}",
        postfix.diagnostics()
    );
    assert!(
        postfix
            .wait_for_log(&format!("connect to {dead}"), WAIT)
            .is_some(),
        "{}",
        postfix.diagnostics()
    );
}

#[test]
fn a_policy_that_never_answers_costs_the_timeout() {
    // Accepts connections, never answers: Postfix waits `timeout`, then applies DUNNO.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = listener.local_addr().unwrap();
    let config = PostfixConfig {
        policy_timeout: Duration::from_secs(1),
        ..PostfixConfig::default().with_policy(silent)
    };
    let postfix = Postfix::require(config);
    let sent = postfix.send(&Mail::new("alice@sender.test", ["bob@example.test"]).client(client()));
    eprintln!(
        "sent with a silent policy service (timeout=1s) in {:?}",
        sent.elapsed
    );
    assert!(sent.is_queued(), "{sent}");
    assert!(sent.elapsed >= Duration::from_secs(1), "{sent}");
    assert_eq!(
        postfix.wait_delivered(1, WAIT).len(),
        1,
        "{}",
        postfix.diagnostics()
    );
    drop(listener);
}

#[test]
fn a_policy_reject_refuses_at_rcpt() {
    let policy = PolicyServer::start("REJECT 5.7.1 test");
    let postfix = Postfix::require(PostfixConfig::default().with_policy(policy.addr));
    let sent = postfix.send(&Mail::new("alice@sender.test", ["bob@example.test"]).client(client()));
    let reply = sent.rcpt_reply().unwrap_or_else(|| panic!("{sent}"));
    assert_eq!(reply.code, 554, "{sent}");
    assert_eq!(reply.enhanced.as_deref(), Some("5.7.1"), "{sent}");
    assert_eq!(
        reply.text,
        "<bob@example.test>: Recipient address rejected: test"
    );
    assert!(!sent.is_queued());
    assert!(postfix.delivered().is_empty());
    // The policy service saw the XCLIENT address.
    let requests = policy.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0].contains("request=smtpd_access_policy\n"));
    assert!(requests[0].contains("protocol_state=RCPT\n"));
    assert!(requests[0].contains("client_address=203.0.113.9\n"));
    assert!(requests[0].contains("recipient=bob@example.test\n"));
}

#[test]
fn a_policy_hold_puts_the_message_in_the_hold_queue() {
    let policy = PolicyServer::start("HOLD test");
    let postfix = Postfix::require(PostfixConfig::default().with_policy(policy.addr));
    let sent = postfix.send(&Mail::new("alice@sender.test", ["bob@example.test"]).client(client()));
    assert!(sent.is_queued(), "{sent}");
    let id = sent.queue_id().unwrap();
    assert_eq!(postfix.hold_queue(), [id], "{}", postfix.diagnostics());
    let queued = postfix.queue();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].sender, "alice@sender.test");
    assert_eq!(queued[0].recipients, ["bob@example.test"]);
    // Held, not delivered; both checks (RCPT and END-OF-MESSAGE) were asked.
    std::thread::sleep(Duration::from_millis(300));
    assert!(postfix.delivered().is_empty(), "{}", postfix.diagnostics());
    let states: Vec<bool> = policy
        .requests()
        .iter()
        .map(|r| r.contains("protocol_state=END-OF-MESSAGE\n"))
        .collect();
    assert_eq!(states, [false, true]);
    assert!(
        postfix
            .maillog()
            .contains("NOQUEUE: hold: RCPT from unknown[203.0.113.9]: <bob@example.test>: Recipient address test;"),
        "{}",
        postfix.diagnostics()
    );
}

#[test]
fn the_policy_address_can_change_at_run_time() {
    let mut postfix = Postfix::require(PostfixConfig::default());
    let mail = Mail::new("alice@sender.test", ["bob@example.test"]).client(client());
    assert!(postfix.send(&mail).is_queued());

    let policy = PolicyServer::start("REJECT 5.7.1 now refused");
    let reloaded = Instant::now();
    postfix.set_policy(Some(policy.addr)).unwrap();
    eprintln!("reconfigured and reloaded in {:?}", reloaded.elapsed());
    let sent = postfix.send(&mail);
    assert_eq!(sent.rcpt_reply().map(|r| r.code), Some(554), "{sent}");

    postfix.set_policy(None).unwrap();
    let sent = postfix.send(&mail);
    assert!(sent.is_queued(), "{sent}");
    assert_eq!(
        postfix.wait_delivered(2, WAIT).len(),
        2,
        "{}",
        postfix.diagnostics()
    );
}

#[test]
fn two_instances_at_once_do_not_collide() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Postfix::require(PostfixConfig::default()));
        let b = s.spawn(|| {
            Postfix::require(PostfixConfig {
                relay_domains: vec!["other.test".into()],
                ..PostfixConfig::default()
            })
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.smtp_addr(), b.smtp_addr());
    assert_ne!(a.sink_addr(), b.sink_addr());
    assert_ne!(a.dir(), b.dir());
    assert_ne!(a.master_pid(), b.master_pid());

    let to_a = a.send(&Mail::new("x@sender.test", ["one@example.test"]).client(client()));
    let to_b = b.send(&Mail::new("x@sender.test", ["two@other.test"]).client(client()));
    assert!(to_a.is_queued(), "{to_a}");
    assert!(to_b.is_queued(), "{to_b}");
    // Each instance has its own relay domains.
    let wrong = b.send(&Mail::new("x@sender.test", ["one@example.test"]).client(client()));
    assert_eq!(wrong.rcpt_reply().map(|r| r.code), Some(554), "{wrong}");

    let got_a = a.wait_delivered(1, WAIT);
    let got_b = b.wait_delivered(1, WAIT);
    assert_eq!(got_a.len(), 1, "{}", a.diagnostics());
    assert_eq!(got_b.len(), 1, "{}", b.diagnostics());
    assert_eq!(got_a[0].rcpt_to, ["one@example.test"]);
    assert_eq!(got_b[0].rcpt_to, ["two@other.test"]);
    let sent_lines = |p: &Postfix| -> Vec<String> {
        p.maillog()
            .lines()
            .filter(|l| l.contains("status=sent"))
            .map(str::to_owned)
            .collect()
    };
    assert!(a.wait_for_log("status=sent", WAIT).is_some());
    assert!(b.wait_for_log("status=sent", WAIT).is_some());
    let (sent_a, sent_b) = (sent_lines(&a), sent_lines(&b));
    assert!(
        sent_a.len() == 1 && sent_a[0].contains("to=<one@example.test>"),
        "{sent_a:?}"
    );
    assert!(
        sent_b.len() == 1 && sent_b[0].contains("to=<two@other.test>"),
        "{sent_b:?}"
    );
}

#[test]
fn dropping_stops_every_process_also_after_a_panic() {
    let seen = Arc::new(Mutex::new(None));
    let record = Arc::clone(&seen);
    let outcome = std::panic::catch_unwind(move || {
        let postfix = Postfix::require(PostfixConfig::default());
        let sent = postfix.send(&Mail::new("a@sender.test", ["b@example.test"]));
        assert!(sent.is_queued(), "{sent}");
        let master = i64::from(postfix.master_pid().unwrap());
        let sink = i64::from(postfix.sink_pid().unwrap());
        let daemons = session(master);
        assert!(daemons.len() > 1, "master and daemons: {daemons:?}");
        *record.lock().unwrap() = Some((master, sink, daemons, postfix.dir().to_path_buf()));
        panic!("on purpose: the instance must still be stopped");
    });
    assert!(outcome.is_err());
    let (master, sink, daemons, dir) = seen.lock().unwrap().take().unwrap();
    assert!(!running(master), "master {master} still runs");
    assert!(!running(sink), "smtp-sink {sink} still runs");
    for pid in daemons {
        assert!(!running(pid), "Postfix process {pid} still runs");
    }
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[test]
fn a_configuration_postfix_refuses_is_an_error_naming_the_log() {
    let broken = PostfixConfig::default().with_main_cf("mail_owner", "no-such-user-here");
    let err = match Postfix::start(broken.clone()) {
        Ok(_) => panic!("Postfix started with mail_owner = no-such-user-here"),
        Err(e) => e,
    };
    let text = err.to_string();
    eprintln!("{text}");
    assert!(matches!(err, Error::Startup { .. }), "{text}");
    assert!(text.contains("no-such-user-here"), "{text}");
    assert!(text.contains("maillog"), "{text}");
    // `require` turns the same error into a failing test, never a skip.
    let panic = std::panic::catch_unwind(|| Postfix::require(broken)).unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("cannot start a Postfix test instance"),
        "{message}"
    );
}

/// Run by other tests in a child process (`ALLOWGATE_TESTKIT_STALE_HELPER=1`): start an
/// instance, report it, wait to be killed. Without the variable it does nothing.
#[test]
fn stale_instance_helper() {
    if std::env::var_os("ALLOWGATE_TESTKIT_STALE_HELPER").is_none() {
        return;
    }
    let postfix = Postfix::require(PostfixConfig::default());
    println!(
        "STALE-INSTANCE {} {} {}",
        postfix.master_pid().unwrap(),
        postfix.sink_pid().unwrap(),
        postfix.dir().display()
    );
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn an_instance_of_a_killed_test_is_stopped_by_the_next_start() {
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "stale_instance_helper", "--nocapture"])
        .env("ALLOWGATE_TESTKIT_STALE_HELPER", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = helper.stdout.take().unwrap();
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("STALE-INSTANCE "));
    // Killed like a test process at its timeout: no destructor runs.
    helper.kill().unwrap();
    helper.wait().unwrap();
    let line = line.expect("the helper reported no instance");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (master, sink) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    let dir = std::path::PathBuf::from(fields[3]);
    // Another test process starting an instance right now may sweep it first: no assertion that
    // it still runs here, only that it is gone after the next start.
    let daemons = session(master);

    let _next = Postfix::require(PostfixConfig::default());
    assert!(!running(master), "stale master {master} still runs");
    assert!(!running(sink), "stale smtp-sink {sink} still runs");
    for pid in daemons {
        assert!(!running(pid), "stale Postfix process {pid} still runs");
    }
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[test]
fn without_root_a_test_fails_it_does_not_skip() {
    // The helper test, run as `nobody`: Postfix cannot start, so the test must fail.
    let output = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "stale_instance_helper"])
        .env("ALLOWGATE_TESTKIT_STALE_HELPER", "1")
        .output()
        .expect("running setpriv (util-linux)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("test result: FAILED. 0 passed; 1 failed"),
        "{text}"
    );
    assert!(text.contains("must start as root"), "{text}");
    assert!(text.contains("it is never skipped"), "{text}");
}
