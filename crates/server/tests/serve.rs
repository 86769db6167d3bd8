//! `allowgate_server::serve` in-process, spoken to over real TCP sockets, with a real SQLite
//! file: the policy protocol of DESIGN §5.2, its caps, hot reload, health and shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use allowgate_server::config::Config;
use allowgate_server::serve::{self, Running};
use allowgate_store::Store;
use allowgate_types::{Actor, Domain, EntryKind, EntrySpec, List, TenantName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Env {
    _dir: tempfile::TempDir,
    url: String,
    store: Store,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("allowgate.db").display());
    let store = Store::open(&url).await.unwrap();
    let actor = Actor::parse("test").unwrap();
    store
        .add_tenant(
            &TenantName::parse("acme").unwrap(),
            &[Domain::parse("example.test").unwrap()],
            &actor,
        )
        .await
        .unwrap();
    Env {
        _dir: dir,
        url,
        store,
    }
}

impl Env {
    async fn add(&self, list: List, value: &str, checks: &str) {
        let spec = EntrySpec {
            list: Some(list),
            kind: Some(EntryKind::Ip),
            value: value.into(),
            checks: (!checks.is_empty()).then(|| checks.parse().unwrap()),
            ..Default::default()
        };
        let (entry, _) = spec.validate().unwrap();
        self.store
            .add_entry(&entry, &Actor::parse("test").unwrap())
            .await
            .unwrap();
    }

    fn config(&self) -> Config {
        let mut config = Config::default();
        config.store.url = self.url.clone();
        config.listen.policy = "127.0.0.1:0".parse().unwrap();
        config.listen.milter = "127.0.0.1:0".parse().unwrap();
        config.listen.http = "127.0.0.1:0".parse().unwrap();
        config.reload.poll_interval_ms = 50;
        config
    }
}

fn rcpt(ip: &str, rcpt: &str, instance: &str) -> String {
    format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
         client_address={ip}\nclient_name=unknown\nreverse_client_name=unknown\nhelo_name=mx.sender.test\n\
         sender=alice@sender.test\nrecipient={rcpt}\nrecipient_count=0\nqueue_id=\n\
         instance={instance}\nsize=0\n\n"
    )
}

/// One policy connection.
struct Policy {
    stream: TcpStream,
}

impl Policy {
    async fn connect(addr: SocketAddr) -> Policy {
        Policy {
            stream: TcpStream::connect(addr).await.unwrap(),
        }
    }

    /// Send `request` and read one reply (up to its empty line).
    async fn ask(&mut self, request: &str) -> String {
        self.stream.write_all(request.as_bytes()).await.unwrap();
        self.reply().await
    }

    async fn reply(&mut self) -> String {
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while !reply.ends_with(b"\n\n") {
            let n = tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut byte))
                .await
                .expect("no reply within 5 s")
                .unwrap();
            assert_eq!(
                n,
                1,
                "connection closed after {:?}",
                String::from_utf8_lossy(&reply)
            );
            reply.push(byte[0]);
        }
        String::from_utf8(reply).unwrap()
    }

    /// Whether the server closed the connection (reading gives end of file) within 5 s.
    async fn closed(&mut self) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

async fn start(env: &Env, config: Config) -> Running {
    let _ = env;
    serve::start(&config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_answers_follow_design_5_2() {
    let env = env().await;
    env.add(List::Block, "203.0.113.66", "").await;
    env.add(List::Allow, "198.51.100.0/24", "spf,greylisting")
        .await;
    let running = start(&env, env.config()).await;
    let mut p = Policy::connect(running.policy_addr()).await;
    // A block entry: REJECT with a text naming no entry.
    let reply = p.ask(&rcpt("203.0.113.66", "bob@example.test", "A1")).await;
    assert_eq!(
        reply,
        "action=REJECT 5.7.1 Message refused by the recipient's mail policy\n\n"
    );
    // An exempted client: PREPEND once per message (instance), then DUNNO.
    let reply = p.ask(&rcpt("198.51.100.7", "bob@example.test", "B1")).await;
    assert_eq!(
        reply,
        "action=PREPEND X-Allowgate: status=clean; bypass=spf,greylisting; entries=2; tenant=acme\n\n"
    );
    let reply = p
        .ask(&rcpt("198.51.100.7", "carol@example.test", "B1"))
        .await;
    assert_eq!(reply, "action=DUNNO\n\n");
    // The next message gets its header again.
    let reply = p
        .ask(&rcpt("198.51.100.7", "carol@example.test", "B2"))
        .await;
    assert!(
        reply.starts_with("action=PREPEND X-Allowgate: status=clean;"),
        "{reply}"
    );
    // Nothing matches: DUNNO; IPv4-mapped IPv6 is IPv4.
    assert_eq!(
        p.ask(&rcpt("192.0.2.1", "bob@example.test", "C1")).await,
        "action=DUNNO\n\n"
    );
    assert_eq!(
        p.ask(&rcpt("::ffff:203.0.113.66", "bob@example.test", "C2"))
            .await,
        "action=REJECT 5.7.1 Message refused by the recipient's mail policy\n\n"
    );
    // Other protocol states: DUNNO, never PREPEND (not allowed at END-OF-MESSAGE).
    let eom = rcpt("198.51.100.7", "", "D1")
        .replace("protocol_state=RCPT", "protocol_state=END-OF-MESSAGE");
    assert_eq!(p.ask(&eom).await, "action=DUNNO\n\n");
    let connect =
        "request=smtpd_access_policy\nprotocol_state=CONNECT\nclient_address=203.0.113.66\n\n";
    assert_eq!(p.ask(connect).await, "action=DUNNO\n\n");
    // Unknown attributes are ignored; several requests in one write are answered in order.
    let two = format!(
        "{}{}",
        rcpt("203.0.113.66", "x@example.test", "E1")
            .replace("size=0\n", "size=0\nfuture_attribute=1\n"),
        rcpt("192.0.2.9", "x@example.test", "E2")
    );
    p.stream.write_all(two.as_bytes()).await.unwrap();
    assert!(p.reply().await.starts_with("action=REJECT"));
    assert_eq!(p.reply().await, "action=DUNNO\n\n");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_close_only_their_connection() {
    let env = env().await;
    env.add(List::Block, "203.0.113.66", "").await;
    let running = start(&env, env.config()).await;
    let addr = running.policy_addr();
    let mut good = Policy::connect(addr).await;
    let blocked = rcpt("203.0.113.66", "bob@example.test", "1");
    assert!(good.ask(&blocked).await.starts_with("action=REJECT"));

    // Over 64 KiB: closed without an answer, before the request even ends.
    let mut big = Policy::connect(addr).await;
    let huge = format!("request=smtpd_access_policy\nx={}\n", "a".repeat(70 * 1024));
    let _ = big.stream.write_all(huge.as_bytes()).await;
    assert!(big.closed().await, "an over-large request was not refused");
    // More than 256 attributes.
    let mut many = Policy::connect(addr).await;
    let attrs: String = (0..300).map(|i| format!("a{i}=v\n")).collect();
    let _ = many.stream.write_all(format!("{attrs}\n").as_bytes()).await;
    assert!(many.closed().await, "300 attributes were not refused");
    // A line that is not name=value.
    let mut junk = Policy::connect(addr).await;
    let _ = junk.stream.write_all(b"GET / HTTP/1.1\n\n").await;
    assert!(junk.closed().await, "a line without = was not refused");

    // The first connection still works.
    assert!(good.ask(&blocked).await.starts_with("action=REJECT"));
    let metrics = running.shared().metrics.render(0, 0.0, true);
    assert!(
        metrics.contains("allowgate_policy_protocol_errors_total 3"),
        "{metrics}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_unfinished_requests_time_out() {
    let env = env().await;
    let mut config = env.config();
    config.policy_server.idle_timeout_s = 1;
    config.policy_server.read_timeout_s = 1;
    let running = start(&env, config).await;
    let mut idle = Policy::connect(running.policy_addr()).await;
    let mut half = Policy::connect(running.policy_addr()).await;
    half.stream
        .write_all(b"request=smtpd_access_policy\nprotocol_state=RCPT\n")
        .await
        .unwrap();
    let started = Instant::now();
    assert!(idle.closed().await && half.closed().await);
    assert!(started.elapsed() < Duration::from_secs(3));
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_elsewhere_is_served_within_a_second() {
    let env = env().await;
    let mut config = env.config();
    config.reload.poll_interval_ms = 250;
    let running = start(&env, config).await;
    let mut p = Policy::connect(running.policy_addr()).await;
    let request = rcpt("203.0.113.77", "bob@example.test", "1");
    assert_eq!(p.ask(&request).await, "action=DUNNO\n\n");
    // Another connection to the same file, as the CLI would be.
    let other = Store::open(&env.url).await.unwrap();
    let spec = EntrySpec {
        list: Some(List::Block),
        kind: Some(EntryKind::Ip),
        value: "203.0.113.77".into(),
        ..Default::default()
    };
    other
        .add_entry(&spec.validate().unwrap().0, &Actor::parse("cli").unwrap())
        .await
        .unwrap();
    let changed = Instant::now();
    loop {
        if p.ask(&request).await.starts_with("action=REJECT") {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "the change was not served within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let health = serve_health(&running).await;
    assert_eq!(health["revision"], 2);
    assert_eq!(health["status"], "ok");
    running.shutdown().await;
}

async fn serve_health(running: &Running) -> serde_json::Value {
    let mut stream = TcpStream::connect(running.http_addr()).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    serde_json::from_str(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_store_it_answers_at_once_and_says_stale() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    // A file in a folder that does not exist: SQLite cannot open it.
    config.store.url = format!(
        "sqlite://{}",
        dir.path().join("missing").join("allowgate.db").display()
    );
    config.listen.policy = "127.0.0.1:0".parse().unwrap();
    config.listen.milter = "127.0.0.1:0".parse().unwrap();
    config.listen.http = "127.0.0.1:0".parse().unwrap();
    config.reload.poll_interval_ms = 50;
    let started = Instant::now();
    let running = serve::start(&config).await.unwrap();
    let mut p = Policy::connect(running.policy_addr()).await;
    assert_eq!(
        p.ask(&rcpt("203.0.113.66", "bob@example.test", "1")).await,
        "action=DUNNO\n\n"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let health = serve_health(&running).await;
    assert_eq!(health["status"], "stale");
    assert_eq!(health["store"], "unreachable");
    // When the store appears, its entries are served.
    std::fs::create_dir(dir.path().join("missing")).unwrap();
    let url = config.store.url.clone();
    let store = Store::open(&url).await.unwrap();
    let spec = EntrySpec {
        list: Some(List::Block),
        kind: Some(EntryKind::Ip),
        value: "203.0.113.66".into(),
        ..Default::default()
    };
    store
        .add_entry(&spec.validate().unwrap().0, &Actor::parse("cli").unwrap())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !p
        .ask(&rcpt("203.0.113.66", "bob@example.test", "2"))
        .await
        .starts_with("action=REJECT")
    {
        assert!(Instant::now() < deadline, "the store was never picked up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(serve_health(&running).await["status"], "ok");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_what_it_started_and_stops_listening() {
    let env = env().await;
    let running = start(&env, env.config()).await;
    let addr = running.policy_addr();
    let mut p = Policy::connect(addr).await;
    // A request half sent when shutdown begins is still answered.
    let request = rcpt("192.0.2.1", "bob@example.test", "1");
    let (head, tail) = request.split_at(40);
    p.stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let shutdown = tokio::spawn(running.shutdown());
    tokio::time::sleep(Duration::from_millis(50)).await;
    p.stream.write_all(tail.as_bytes()).await.unwrap();
    assert_eq!(p.reply().await, "action=DUNNO\n\n");
    assert!(p.closed().await);
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("shutdown hung")
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
}

/// The milter speaks protocol 6 with whoever connects: negotiation answered, garbage closes
/// only that connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milter_negotiates_and_closes_on_garbage() {
    use allowgate_milter::{Command, OptNeg, encode_command};
    let env = env().await;
    let running = start(&env, env.config()).await;
    // Garbage: a packet longer than any cap.
    let mut junk = TcpStream::connect(running.milter_addr()).await.unwrap();
    junk.write_all(&[0xff, 0xff, 0xff, 0xff, b'O'])
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), junk.read(&mut buf))
        .await
        .expect("not closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "garbage got an answer");
    let metrics = &running.shared().metrics;
    assert_eq!(
        metrics
            .milter_protocol_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        metrics
            .protocol_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "a milter error counted as a policy one"
    );
    // Negotiation as Postfix 3.7 offers it.
    let mut stream = TcpStream::connect(running.milter_addr()).await.unwrap();
    let mut out = Vec::new();
    let offer = OptNeg {
        version: 6,
        actions: 0x1ff,
        protocol: 0x1f_ffff,
    };
    encode_command(&Command::OptNeg(offer), &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    let mut reply = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut reply))
        .await
        .expect("no negotiation reply")
        .unwrap();
    // Our reply is a response, not a command: check its code and version by hand.
    assert!(n >= 17, "short negotiation reply: {:?}", &reply[..n]);
    assert_eq!(reply[4], b'O');
    assert_eq!(&reply[5..9], &6u32.to_be_bytes());
    running.shutdown().await;
}

/// The policy server records the recipients it refuses (stage `rcpt`: they never reach the
/// milter) and, by default, not the ones it lets through (the milter records those once per
/// message); `policy_server.history = "all"` records every answer. Shutdown writes what is
/// queued, and entry hit counts come from the same records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_records_refusals_at_rcpt_and_is_flushed_at_shutdown() {
    use allowgate_server::config::PolicyHistory;
    use allowgate_store::HistoryFilter;
    use allowgate_types::EntryId;
    let env = env().await;
    env.add(List::Block, "203.0.113.66", "").await; // entry 1
    env.add(List::Allow, "198.51.100.0/24", "spf").await; // entry 2
    let mut config = env.config();
    config.history.node = "gw-test".into();
    let running = start(&env, config.clone()).await;
    let mut p = Policy::connect(running.policy_addr()).await;
    assert!(
        p.ask(&rcpt("203.0.113.66", "bob@example.test", "A1"))
            .await
            .starts_with("action=REJECT")
    );
    assert!(
        p.ask(&rcpt("198.51.100.7", "bob@example.test", "B1"))
            .await
            .starts_with("action=PREPEND")
    );
    assert_eq!(
        p.ask(&rcpt("192.0.2.1", "bob@example.test", "C1")).await,
        "action=DUNNO\n\n"
    );
    running.shutdown().await;
    let records = env.store.history(&HistoryFilter::default()).await.unwrap();
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!(
        (r.stage.as_str(), r.status.as_str(), r.action.as_str()),
        ("rcpt", "blocked", "reject")
    );
    assert_eq!(r.client_ip, "203.0.113.66");
    assert_eq!(r.node, "gw-test");
    assert_eq!(r.tenant.as_deref(), Some("acme"));
    assert_eq!(r.sender.as_deref(), Some("alice@sender.test"));
    assert_eq!(r.recipients, vec!["bob@example.test".to_string()]);
    assert_eq!(r.reason, "Blocked: blocked by entry #1");
    assert_eq!(r.matched.len(), 1);
    assert_eq!((r.matched[0].id, r.matched[0].list.as_str()), (1, "block"));
    let hits = env.store.entry_hits(EntryId(1)).await.unwrap().unwrap();
    assert_eq!(hits.hits, 1);
    assert_eq!(env.store.entry_hits(EntryId(2)).await.unwrap(), None);

    // Every answer, for a Postfix without the milter.
    config.policy_server.history = PolicyHistory::All;
    let running = start(&env, config).await;
    let mut p = Policy::connect(running.policy_addr()).await;
    p.ask(&rcpt("198.51.100.7", "bob@example.test", "D1")).await;
    p.ask(&rcpt("192.0.2.1", "bob@example.test", "E1")).await;
    running.shutdown().await;
    let records = env.store.history(&HistoryFilter::default()).await.unwrap();
    let summary: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| (r.client_ip.as_str(), r.status.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("192.0.2.1", "pass", "Pass"),
            ("198.51.100.7", "clean", "Clean: exempted by entry #2"),
            ("203.0.113.66", "blocked", "Blocked: blocked by entry #1"),
        ]
    );
    assert!(records.iter().all(|r| r.stage == "rcpt"));
    assert_eq!(records[1].bypassed, vec!["spf".to_string()]);
    assert_eq!(
        env.store
            .entry_hits(EntryId(2))
            .await
            .unwrap()
            .unwrap()
            .hits,
        1
    );
}

/// The two timeouts apart: a request begun and not finished is closed after `read_timeout_s`
/// from its first byte even when it trickles in, while an idle connection is kept until
/// `idle_timeout_s`; a connection that keeps asking is never closed as idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_and_idle_timeouts_are_kept_apart() {
    let env = env().await;
    let mut config = env.config();
    config.policy_server.idle_timeout_s = 2;
    config.policy_server.read_timeout_s = 1;
    let running = start(&env, config).await;
    let mut idle = Policy::connect(running.policy_addr()).await;
    let mut busy = Policy::connect(running.policy_addr()).await;
    let mut trickle = Policy::connect(running.policy_addr()).await;
    let started = Instant::now();
    // A byte every 200 ms: still unfinished after 1 s.
    let request = rcpt("192.0.2.1", "bob@example.test", "T1");
    let mut bytes = request.as_bytes().iter();
    let mut closed_at = None;
    while started.elapsed() < Duration::from_millis(3500) {
        if closed_at.is_none() {
            let byte = *bytes.next().unwrap();
            if trickle.stream.write_all(&[byte]).await.is_err() {
                closed_at = Some(started.elapsed());
            }
        }
        // The busy connection asks every 500 ms: it must never be closed as idle.
        if started.elapsed().as_millis() % 500 < 200 {
            assert_eq!(
                busy.ask(&rcpt("192.0.2.2", "bob@example.test", "B")).await,
                "action=DUNNO\n\n"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The trickle was cut off between 1 s and 2 s (a write after the close may take one
    // more round to fail).
    let closed_at = closed_at.expect("a trickling request was never cut off");
    assert!(
        closed_at >= Duration::from_secs(1) && closed_at < Duration::from_millis(2500),
        "cut off after {closed_at:?}"
    );
    // The idle connection went at its idle timeout (2 s), before the loop ended.
    assert!(idle.closed().await);
    assert_eq!(
        busy.ask(&rcpt("192.0.2.2", "bob@example.test", "B")).await,
        "action=DUNNO\n\n"
    );
    running.shutdown().await;
}

/// Retention: records older than `history.retention_days` are deleted when the server starts
/// (and hourly after); younger ones stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_retention_deletes_old_records_at_start() {
    use allowgate_store::{HistoryFilter, HistoryRecord};
    let env = env().await;
    let record = |days: i64, ip: &str| HistoryRecord {
        time: chrono::Utc::now() - chrono::Duration::days(days),
        node: "gw1".into(),
        queue_id: None,
        tenant: None,
        client_ip: ip.into(),
        sender: None,
        sender_source: None,
        recipients: vec!["bob@example.test".into()],
        status: "pass".into(),
        action: "accept".into(),
        stage: "message".into(),
        bypassed: vec![],
        matched: vec![],
        checks: Default::default(),
        reason: "Pass".into(),
        revision: 1,
    };
    env.store
        .record_history(&[record(40, "192.0.2.40"), record(10, "192.0.2.10")])
        .await
        .unwrap();
    let mut config = env.config();
    config.history.retention_days = 30;
    let running = start(&env, config).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<String> = env
            .store
            .history(&HistoryFilter::default())
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.client_ip)
            .collect();
        if left == ["192.0.2.10"] {
            break;
        }
        assert!(Instant::now() < deadline, "retention did not run: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.shutdown().await;
}

/// On a store with no user, the first start creates the admin user and hands its one-time
/// password over once; a later start, with a user in the store, creates nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_creates_an_admin_once() {
    use allowgate_store::Role;
    let env = env().await;
    assert!(env.store.list_users().await.unwrap().is_empty());
    let mut running = start(&env, env.config()).await;
    let (name, password) = running.take_first_admin().expect("no first admin");
    assert_eq!(name, allowgate_server::serve::FIRST_ADMIN);
    assert!(running.take_first_admin().is_none(), "handed over twice");
    running.shutdown().await;
    let user = env
        .store
        .verify_password(&name, password.as_str())
        .await
        .unwrap();
    assert_eq!(user.role, Role::Admin);
    assert_eq!(user.tenant, None);
    let mut again = start(&env, env.config()).await;
    assert!(again.take_first_admin().is_none());
    again.shutdown().await;
    assert_eq!(env.store.list_users().await.unwrap().len(), 1);
}
