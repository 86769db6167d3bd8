//! The codec against a real Postfix 3.7 (allowgate-testkit): a tiny milter — std::net, a thread
//! per connection, nothing but this crate's [`Decoder`], [`negotiate`] and [`encode_response`] —
//! negotiates with Postfix, sees every stage with the values the test sent, and its header
//! changes, rejections, tempfails and quarantines take effect in the delivered mail, the SMTP
//! replies and the hold queue. The last test pins down how a policy server's `PREPEND` header
//! meets the milter, which decides how the server keeps exactly one `X-Allowgate` header.
//!
//! Each test asserts the Postfix facts it observed, so a Postfix that behaves differently fails
//! here first. These tests need root and Debian's postfix and swaks; without them they fail
//! (never skip).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use allowgate_milter::{
    Command, Decoder, Family, Limits, OptNeg, Response, encode_response, envelope_address,
    macro_value, needs_reply, negotiate,
};
use allowgate_testkit::{DeliveredMessage, Mail, Postfix, PostfixConfig, SendResult};

const WAIT: Duration = Duration::from_secs(15);

fn client() -> IpAddr {
    "203.0.113.9".parse().unwrap()
}

// --- a tiny milter ------------------------------------------------------------------------

/// What the milter answers to a command that needs an answer, given the commands of its
/// connection so far (the current one last).
type Script = dyn Fn(&Command, &[Command]) -> Vec<Response> + Send + Sync;

/// What one milter connection saw.
#[derive(Debug, Default, Clone)]
struct Session {
    commands: Vec<Command>,
    error: Option<String>,
}

impl Session {
    fn has_mail(&self) -> bool {
        self.commands.iter().any(|c| matches!(c, Command::Mail(_)))
    }

    fn connect(&self) -> Option<&allowgate_milter::Connect> {
        self.commands.iter().find_map(|c| match c {
            Command::Connect(connect) => Some(connect),
            _ => None,
        })
    }

    /// The commands without the macros.
    fn events(&self) -> Vec<&Command> {
        self.commands
            .iter()
            .filter(|c| !matches!(c, Command::Macros { .. }))
            .collect()
    }

    /// The macros sent before each command with code `stage`, in order.
    fn macros(&self, stage: u8) -> Vec<&[(String, String)]> {
        self.commands
            .iter()
            .filter_map(|c| match c {
                Command::Macros { stage: s, pairs } if *s == stage => Some(pairs.as_slice()),
                _ => None,
            })
            .collect()
    }

    fn headers(&self) -> Vec<(&str, &str)> {
        self.commands
            .iter()
            .filter_map(|c| match c {
                Command::Header { name, value } => Some((name.as_str(), value.as_str())),
                _ => None,
            })
            .collect()
    }
}

/// The headers of the message being received: those after the last `MAIL`.
fn current_headers(history: &[Command]) -> Vec<(&str, &str)> {
    let start = history
        .iter()
        .rposition(|c| matches!(c, Command::Mail(_)))
        .unwrap_or(0);
    history[start..]
        .iter()
        .filter_map(|c| match c {
            Command::Header { name, value } => Some((name.as_str(), value.as_str())),
            _ => None,
        })
        .collect()
}

/// The value of the test's `X-Do` header in the current message: what the milter should do.
fn wanted(history: &[Command]) -> String {
    current_headers(history)
        .iter()
        .find(|(name, _)| *name == "X-Do")
        .map(|(_, value)| (*value).to_owned())
        .unwrap_or_default()
}

struct TestMilter {
    addr: SocketAddr,
    sessions: Arc<Mutex<Vec<Arc<Mutex<Session>>>>>,
}

impl TestMilter {
    fn start(
        script: impl Fn(&Command, &[Command]) -> Vec<Response> + Send + Sync + 'static,
    ) -> TestMilter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sessions: Arc<Mutex<Vec<Arc<Mutex<Session>>>>> = Arc::default();
        let all = Arc::clone(&sessions);
        let script: Arc<Script> = Arc::new(script);
        // Detached threads: they end with the test process.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let session = Arc::new(Mutex::new(Session::default()));
                all.lock().unwrap().push(Arc::clone(&session));
                let script = Arc::clone(&script);
                std::thread::spawn(move || serve(stream, &*script, &session));
            }
        });
        TestMilter { addr, sessions }
    }

    /// Every connection so far; panics when one saw a protocol error.
    fn sessions(&self) -> Vec<Session> {
        let sessions: Vec<Session> = self
            .sessions
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.lock().unwrap().clone())
            .collect();
        for session in &sessions {
            assert_eq!(session.error, None, "{:#?}", session.commands);
        }
        sessions
    }

    /// The connections that carried a `MAIL` (the harness's start-up probe and the session
    /// before XCLIENT carry none).
    fn mail_sessions(&self) -> Vec<Session> {
        self.sessions()
            .into_iter()
            .filter(Session::has_mail)
            .collect()
    }
}

/// One milter connection: decode, record, answer. Macros, aborts and quits get no answer.
fn serve(mut stream: TcpStream, script: &Script, session: &Mutex<Session>) {
    let mut decoder = Decoder::new(Limits::default());
    // The agreed protocol bits: the commands Postfix reads no answer to.
    let mut protocol = 0;
    // Small reads on purpose: packets arrive split across reads and several per read.
    let mut buf = [0u8; 100];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        decoder.feed(&buf[..n]);
        loop {
            let command = match decoder.next_command() {
                Ok(Some(command)) => command,
                Ok(None) => break,
                Err(e) => {
                    session.lock().unwrap().error = Some(e.to_string());
                    return;
                }
            };
            let history = {
                let mut session = session.lock().unwrap();
                session.commands.push(command.clone());
                session.commands.clone()
            };
            let responses = match &command {
                Command::OptNeg(offer) => {
                    let ours = negotiate(offer).unwrap();
                    protocol = ours.protocol;
                    vec![Response::OptNeg(ours)]
                }
                Command::Quit => return,
                c if !needs_reply(protocol, c) => vec![],
                c => script(c, &history),
            };
            let mut out = Vec::new();
            for response in &responses {
                encode_response(response, &mut out).unwrap();
            }
            if stream.write_all(&out).is_err() {
                return;
            }
        }
    }
}

/// Continue everywhere, and at end of body do what the test asks: the responses before the
/// final `Continue`.
fn at_end_of_body(
    responses: impl Fn(&[Command]) -> Vec<Response> + Send + Sync + 'static,
) -> impl Fn(&Command, &[Command]) -> Vec<Response> + Send + Sync + 'static {
    move |command, history| {
        let mut out = Vec::new();
        if *command == Command::EndOfBody {
            out = responses(history);
        }
        if !out.last().is_some_and(Response::is_final) {
            out.push(Response::Continue);
        }
        out
    }
}

// --- a tiny policy server -------------------------------------------------------------------

/// A Postfix policy service answering `rcpt_action` at `RCPT` and `DUNNO` otherwise.
fn policy_server(rcpt_action: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut state = String::new();
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    if let Some(value) = line.strip_prefix("protocol_state=") {
                        state = value.to_owned();
                    }
                    if line.is_empty() {
                        let action = if state == "RCPT" {
                            rcpt_action
                        } else {
                            "DUNNO"
                        };
                        let reply = format!("action={action}\n\n");
                        if writer.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

// --- helpers ----------------------------------------------------------------------------------

fn start_postfix(milter: &TestMilter) -> Postfix {
    Postfix::require(PostfixConfig::default().with_milter(milter.addr))
}

/// Send a mail with `X-Do: what` from the test client.
fn send_doing(postfix: &Postfix, what: &str) -> SendResult {
    postfix.send(
        &Mail::new("alice@sender.test", ["bob@example.test"])
            .client(client())
            .header("X-Do", what),
    )
}

/// Wait until the messages with these `X-Do` values are delivered, then a little longer, and
/// return every delivered message: a refused message would have arrived by then.
fn delivered_after(postfix: &Postfix, expected: &[&str]) -> Vec<DeliveredMessage> {
    let delivered = postfix.wait_delivered(expected.len(), WAIT);
    std::thread::sleep(Duration::from_millis(500));
    let delivered = if delivered.len() == expected.len() {
        postfix.delivered()
    } else {
        delivered
    };
    let mut got: Vec<&str> = delivered
        .iter()
        .map(|m| m.header("X-Do").unwrap_or(""))
        .collect();
    got.sort_unstable();
    let mut want = expected.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "{}", postfix.diagnostics());
    delivered
}

fn pairs_named(pairs: &[(String, String)]) -> Vec<&str> {
    pairs.iter().map(|(name, _)| name.as_str()).collect()
}

// --- tests ------------------------------------------------------------------------------------

#[test]
fn negotiates_and_sees_every_stage_with_the_values_sent() {
    let milter = TestMilter::start(|_, _| vec![Response::Continue]);
    let postfix = start_postfix(&milter);
    let sent = postfix.send(
        &Mail::new(
            "alice@sender.test",
            ["bob@example.test", "carol@example.test"],
        )
        .client(client())
        .helo("mx.sender.test")
        .header("X-Test-Sender", "hello there")
        .header("X-Folded", "first\n\tsecond")
        .body("hello\n.dot line\n"),
    );
    assert!(sent.is_queued(), "{sent}");
    let queue_id = sent.queue_id().unwrap().to_owned();
    let delivered = postfix.wait_delivered(1, WAIT);
    assert_eq!(delivered.len(), 1, "{}", postfix.diagnostics());

    // Every milter connection negotiated the same way: Postfix 3.7 offers version 6, all nine
    // actions and all 21 protocol bits.
    let sessions = milter.sessions();
    for session in &sessions {
        assert_eq!(
            session.commands.first(),
            Some(&Command::OptNeg(OptNeg {
                version: 6,
                actions: 0x1ff,
                protocol: 0x1f_ffff,
            })),
        );
    }
    // XCLIENT ends the milter connection of the real client (abort, quit) and opens a new one
    // with the XCLIENT values: the connections without a MAIL all come from 127.0.0.1 (the
    // harness's start-up probe, and swaks before its XCLIENT).
    for session in sessions.iter().filter(|s| !s.has_mail()) {
        assert_eq!(session.connect().unwrap().address, "127.0.0.1");
        assert_eq!(session.connect().unwrap().hostname, "localhost");
        assert_eq!(session.commands.last(), Some(&Command::Quit));
    }
    let pre_xclient = sessions
        .iter()
        .find(|s| s.commands.iter().any(|c| matches!(c, Command::Helo(_))) && !s.has_mail())
        .expect("a milter connection for the client before XCLIENT");
    let tail: Vec<&Command> = pre_xclient.events().into_iter().rev().take(2).collect();
    assert_eq!(tail, [&Command::Quit, &Command::Abort]);

    let sessions = milter.mail_sessions();
    assert_eq!(sessions.len(), 1);
    let session = &sessions[0];

    // The stages, in order. DATA (`T`) and the end of the headers (`N`) are not sent: the
    // filter negotiated them away (SMFIP_NODATA, SMFIP_NOEOH).
    let events = session.events();
    let kinds: String = events.iter().map(|c| char::from(c.code())).collect();
    assert_eq!(kinds, "OCHMRRLLLLLLLBEAAQ", "{events:#?}");

    // Connect: the XCLIENT address, no name (XCLIENT NAME=[UNAVAILABLE]).
    let connect = session.connect().unwrap();
    assert_eq!(connect.family, Family::Inet);
    assert_eq!(connect.address, "203.0.113.9");
    assert_eq!(connect.hostname, "[203.0.113.9]");
    assert_eq!(connect.ip(), Some(client()));
    assert_eq!(connect.host_name(), None);
    assert_ne!(connect.port, 0);

    assert!(events.contains(&&Command::Helo("mx.sender.test".into())));
    let mail = Command::Mail(vec!["<alice@sender.test>".into()]);
    assert!(events.contains(&&mail));
    let rcpts: Vec<&str> = events
        .iter()
        .filter_map(|c| match c {
            Command::Rcpt(args) => Some(envelope_address(&args[0])),
            _ => None,
        })
        .collect();
    assert_eq!(rcpts, ["bob@example.test", "carol@example.test"]);

    // Headers: the message's own, then the Date Postfix added; not Postfix's Received. One space
    // after the colon is removed; a folded value keeps its "\n\t".
    let message_id = sent_header(&delivered[0], "Message-ID");
    assert_eq!(
        session.headers(),
        [
            ("From", "alice@sender.test"),
            ("To", "bob@example.test, carol@example.test"),
            ("Subject", "allowgate test"),
            ("Message-ID", message_id.as_str()),
            ("X-Test-Sender", "hello there"),
            ("X-Folded", "first\n\tsecond"),
            ("Date", sent_header(&delivered[0], "Date").as_str()),
        ]
    );

    // The body as on the wire: CRLF line ends, dot-stuffing undone.
    let body: Vec<u8> = events
        .iter()
        .filter_map(|c| match c {
            Command::Body(bytes) => Some(bytes.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(body, b"hello\r\n.dot line\r\n");

    // The macros Postfix 3.7 sends by default, per stage.
    let connect_macros = session.macros(b'C');
    assert_eq!(connect_macros.len(), 1);
    assert_eq!(
        pairs_named(connect_macros[0]),
        ["j", "{daemon_name}", "{daemon_addr}", "v", "_"]
    );
    assert_eq!(macro_value(connect_macros[0], "j"), Some("gw.example.test"));
    assert_eq!(
        macro_value(connect_macros[0], "daemon_addr"),
        Some("127.0.0.1")
    );
    assert!(
        macro_value(connect_macros[0], "v")
            .unwrap()
            .starts_with("Postfix 3.")
    );
    assert_eq!(
        macro_value(connect_macros[0], "_"),
        Some("localhost [203.0.113.9] (may be forged)")
    );
    // HELO: an empty macro packet (the TLS macros are not defined without TLS).
    assert_eq!(session.macros(b'H'), [&[] as &[(String, String)]]);
    // MAIL: the sender; no queue id yet.
    let mail_macros = session.macros(b'M');
    assert_eq!(
        pairs_named(mail_macros[0]),
        ["{mail_addr}", "{mail_host}", "{mail_mailer}"]
    );
    assert_eq!(
        macro_value(mail_macros[0], "mail_addr"),
        Some("alice@sender.test")
    );
    // RCPT: the recipient; the queue id only once a recipient was accepted (Postfix creates
    // the queue file then), so not at the first RCPT.
    let rcpt_macros = session.macros(b'R');
    assert_eq!(
        pairs_named(rcpt_macros[0]),
        ["{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"]
    );
    assert_eq!(
        macro_value(rcpt_macros[0], "rcpt_addr"),
        Some("bob@example.test")
    );
    assert_eq!(
        pairs_named(rcpt_macros[1]),
        ["i", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"]
    );
    assert_eq!(macro_value(rcpt_macros[1], "{i}"), Some(queue_id.as_str()));
    // DATA (its macros still come, without the command), every header, every body chunk, end
    // of body: the queue id alone.
    for stage in [b'T', b'L', b'B', b'E'] {
        let macros = session.macros(stage);
        assert!(!macros.is_empty());
        for pairs in macros {
            assert_eq!(pairs, [("i".to_owned(), queue_id.clone())], "stage {stage}");
        }
    }
    // The end of the headers: neither command nor macros.
    assert!(session.macros(b'N').is_empty());
    assert_eq!(session.macros(b'L').len(), session.headers().len());
}

/// The value of header `name` as the sink received it (for values Postfix or swaks made up).
fn sent_header(message: &DeliveredMessage, name: &str) -> String {
    message.header(name).unwrap().to_owned()
}

#[test]
fn header_changes_show_up_in_the_delivered_message() {
    let milter = TestMilter::start(at_end_of_body(|_| {
        vec![
            Response::AddHeader {
                name: "X-Test".into(),
                value: "1".into(),
            },
            // An empty value deletes.
            Response::ChangeHeader {
                index: 1,
                name: "X-Remove-Me".into(),
                value: String::new(),
            },
            // The second of two headers of a name (names match case-insensitively).
            Response::ChangeHeader {
                index: 2,
                name: "x-dup".into(),
                value: String::new(),
            },
            Response::ChangeHeader {
                index: 1,
                name: "X-Change-Me".into(),
                value: "changed".into(),
            },
            // A header that is not there is added, at the end.
            Response::ChangeHeader {
                index: 1,
                name: "X-Absent".into(),
                value: "added".into(),
            },
            // Index 0: before every header, Postfix's own Received included.
            Response::InsertHeader {
                index: 0,
                name: "X-Inserted".into(),
                value: "top".into(),
            },
        ]
    }));
    let postfix = start_postfix(&milter);
    let sent = postfix.send(
        &Mail::new("alice@sender.test", ["bob@example.test"])
            .client(client())
            .header("X-Remove-Me", "secret")
            .header("X-Dup", "one")
            .header("X-Dup", "two")
            .header("X-Change-Me", "before"),
    );
    assert!(sent.is_queued(), "{sent}");
    let delivered = postfix.wait_delivered(1, WAIT);
    assert_eq!(delivered.len(), 1, "{}", postfix.diagnostics());
    let message = &delivered[0];
    assert_eq!(message.header_all("X-Test"), ["1"]);
    assert_eq!(message.header_all("X-Remove-Me"), Vec::<&str>::new());
    assert_eq!(message.header_all("X-Dup"), ["one"]);
    assert_eq!(message.header_all("X-Change-Me"), ["changed"]);
    assert_eq!(message.header_all("X-Absent"), ["added"]);
    // Order: the added headers last, in the order sent.
    let names: Vec<&str> = message.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[names.len() - 2..], ["X-Test", "X-Absent"]);
    // The inserted header comes right before Postfix's Received.
    let received = message
        .headers
        .iter()
        .position(|(n, v)| n == "Received" && v.contains("(Postfix)"))
        .unwrap();
    assert_eq!(
        message.headers[received - 1],
        ("X-Inserted".to_owned(), "top".to_owned())
    );
    // The milter's changes are all the changes: the other headers are as sent.
    assert_eq!(message.header("Subject"), Some("allowgate test"));
    assert!(postfix.queue().is_empty(), "{}", postfix.diagnostics());
}

#[test]
fn verdicts_at_end_of_message() {
    let milter = TestMilter::start(|command, history| {
        if *command != Command::EndOfBody {
            return vec![Response::Continue];
        }
        vec![match wanted(history).as_str() {
            "reply" => Response::ReplyCode("550 5.7.1 blocked by test".into()),
            "percent" => Response::ReplyCode("451 4.7.1 100% sure, try again".into()),
            "reject" => Response::Reject,
            "tempfail" => Response::Tempfail,
            "discard" => Response::Discard,
            "accept" => Response::Accept,
            _ => Response::Continue,
        }]
    });
    let postfix = start_postfix(&milter);
    // (what, reply code, enhanced code, text, queued)
    let cases: &[(&str, u16, &str, &str, bool)] = &[
        ("reply", 550, "5.7.1", "blocked by test", false),
        // `%` doubled on the wire, undoubled by Postfix.
        ("percent", 451, "4.7.1", "100% sure, try again", false),
        ("reject", 550, "5.7.1", "Command rejected", false),
        (
            "tempfail",
            451,
            "4.7.1",
            "Service unavailable - try again later",
            false,
        ),
        // Accepted and thrown away.
        ("discard", 250, "2.0.0", "Ok: queued as", true),
        ("accept", 250, "2.0.0", "Ok: queued as", true),
        ("continue", 250, "2.0.0", "Ok: queued as", true),
    ];
    for (what, code, enhanced, text, queued) in cases {
        let sent = send_doing(&postfix, what);
        let reply = sent
            .end_of_data
            .as_ref()
            .unwrap_or_else(|| panic!("{sent}"));
        assert_eq!(reply.code, *code, "{what}: {sent}");
        assert_eq!(reply.enhanced.as_deref(), Some(*enhanced), "{what}: {sent}");
        assert!(reply.text.starts_with(text), "{what}: {sent}");
        assert_eq!(sent.is_queued(), *queued, "{what}: {sent}");
    }
    // Only the accepted and continued messages arrive.
    delivered_after(&postfix, &["accept", "continue"]);
    let log = postfix.maillog();
    assert!(
        log.contains(
            "milter-reject: END-OF-MESSAGE from unknown[203.0.113.9]: 5.7.1 blocked by test"
        ),
        "{log}"
    );
    assert!(log.contains("milter-discard: END-OF-MESSAGE"), "{log}");
    assert!(postfix.queue().is_empty(), "{}", postfix.diagnostics());
}

#[test]
fn verdicts_at_rcpt_concern_that_recipient_only() {
    let milter = TestMilter::start(|command, _| {
        let Command::Rcpt(args) = command else {
            return vec![Response::Continue];
        };
        vec![match envelope_address(&args[0]) {
            "carol@example.test" => Response::ReplyCode("550 5.7.1 blocked by test".into()),
            "dave@example.test" => Response::Reject,
            "erin@example.test" => Response::Tempfail,
            _ => Response::Continue,
        }]
    });
    let postfix = start_postfix(&milter);
    let recipients = [
        "bob@example.test",
        "carol@example.test",
        "dave@example.test",
        "erin@example.test",
        "frank@example.test",
    ];
    let sent = postfix.send(
        &Mail::new("alice@sender.test", recipients)
            .client(client())
            .header("X-Do", "rcpt"),
    );
    let replies: Vec<(u16, &str)> = sent
        .rcpt
        .iter()
        .map(|r| (r.reply.code, r.reply.lines[0].as_str()))
        .collect();
    assert_eq!(
        replies,
        [
            (250, "250 2.1.5 Ok"),
            (550, "550 5.7.1 blocked by test"),
            (550, "550 5.7.1 Command rejected"),
            (451, "451 4.7.1 Service unavailable - try again later"),
            (250, "250 2.1.5 Ok"),
        ],
        "{sent}"
    );
    assert!(sent.is_queued(), "{sent}");
    let delivered = delivered_after(&postfix, &["rcpt"]);
    assert_eq!(
        delivered[0].rcpt_to,
        ["bob@example.test", "frank@example.test"]
    );
    // The milter saw every RCPT, and the message with the accepted recipients only.
    let session = &milter.mail_sessions()[0];
    let seen: Vec<&str> = session
        .events()
        .iter()
        .filter_map(|c| match c {
            Command::Rcpt(args) => Some(envelope_address(&args[0])),
            _ => None,
        })
        .collect();
    assert_eq!(seen, recipients);
    assert!(session.commands.contains(&Command::EndOfBody));
}

#[test]
fn quarantine_puts_the_message_on_the_hold_queue() {
    let milter = TestMilter::start(at_end_of_body(|history| {
        if wanted(history) == "quarantine" {
            vec![Response::Quarantine("held by test".into())]
        } else {
            vec![]
        }
    }));
    let postfix = start_postfix(&milter);
    let held = send_doing(&postfix, "quarantine");
    // Accepted: the client cannot tell.
    assert!(held.is_queued(), "{held}");
    let control = send_doing(&postfix, "control");
    assert!(control.is_queued(), "{control}");
    delivered_after(&postfix, &["control"]);
    assert_eq!(
        postfix.hold_queue(),
        [held.queue_id().unwrap()],
        "{}",
        postfix.diagnostics()
    );
    let line = postfix
        .wait_for_log("milter-hold", WAIT)
        .unwrap_or_else(|| postfix.diagnostics());
    assert!(
        line.contains(&format!(
            "{}: milter-hold: END-OF-MESSAGE from unknown[203.0.113.9]: milter triggers HOLD action",
            held.queue_id().unwrap()
        )),
        "{line}"
    );
}

/// How a policy server's `PREPEND` meets the milter: the milter sees the prepended header
/// among the message's headers (one per accepted recipient: Postfix asks the policy server at
/// each RCPT), before the message's own, and can delete each with `ChangeHeader`. Indexes count
/// the headers of that name that are left when the change is made, in message order.
#[test]
fn policy_prepend_is_seen_by_the_milter_and_can_be_replaced() {
    let milter = TestMilter::start(at_end_of_body(|history| {
        let delete = |index| Response::ChangeHeader {
            index,
            name: "X-Allowgate".into(),
            value: String::new(),
        };
        match wanted(history).as_str() {
            // Exactly one X-Allowgate: delete every one seen, last first, then add ours.
            "replace" => {
                let seen = current_headers(history)
                    .iter()
                    .filter(|(name, _)| name.eq_ignore_ascii_case("X-Allowgate"))
                    .count();
                let mut responses: Vec<Response> =
                    (1..=seen).rev().map(|i| delete(i as u32)).collect();
                responses.push(Response::AddHeader {
                    name: "X-Allowgate".into(),
                    value: "status=pass".into(),
                });
                responses
            }
            // A deleted header no longer counts: index 1 twice deletes the first two.
            "1,1" => vec![delete(1), delete(1)],
            // …so index 2 after index 1 is the third one seen (here: none).
            "1,2" => vec![delete(1), delete(2)],
            _ => vec![],
        }
    }));
    let policy = policy_server("PREPEND X-Allowgate: status=clean");
    let postfix = Postfix::require(
        PostfixConfig::default()
            .with_milter(milter.addr)
            .with_policy(policy),
    );
    let send = |what: &str, to: &[&str]| {
        let sent = postfix.send(
            &Mail::new("alice@sender.test", to.iter().copied())
                .client(client())
                .header("X-Allowgate", "status=forged")
                .header("X-Do", what),
        );
        assert!(sent.is_queued(), "{sent}");
    };
    send("replace", &["bob@example.test"]);
    send("replace", &["bob@example.test", "carol@example.test"]);
    send("1,1", &["bob@example.test"]);
    send("1,2", &["bob@example.test"]);
    send("none", &["bob@example.test"]);

    // What the milter saw, per message: the prepended headers first, in front of the others.
    let seen: Vec<Vec<String>> = milter
        .mail_sessions()
        .iter()
        .map(|s| {
            s.headers()
                .iter()
                .filter(|(name, _)| *name == "X-Allowgate")
                .map(|(_, value)| (*value).to_owned())
                .collect()
        })
        .collect();
    let one = ["status=clean", "status=forged"];
    let two = ["status=clean", "status=clean", "status=forged"];
    assert_eq!(seen, [&one[..], &two[..], &one[..], &one[..], &one[..]]);
    for session in milter.mail_sessions() {
        let headers = session.headers();
        assert_eq!(headers[0], ("X-Allowgate", "status=clean"));
        assert_eq!(headers.iter().filter(|(n, _)| *n == "From").count(), 1);
    }

    let delivered = delivered_after(&postfix, &["replace", "replace", "1,1", "1,2", "none"]);
    let mut outcome: Vec<(String, Vec<String>)> = delivered
        .iter()
        .map(|m| {
            (
                m.header("X-Do").unwrap().to_owned(),
                m.header_all("X-Allowgate")
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
            )
        })
        .collect();
    outcome.sort();
    let expected: Vec<(String, Vec<String>)> = [
        ("1,1", vec![]),
        ("1,2", vec!["status=forged"]),
        ("none", vec!["status=clean", "status=forged"]),
        ("replace", vec!["status=pass"]),
        ("replace", vec!["status=pass"]),
    ]
    .into_iter()
    .map(|(what, values)| {
        (
            what.to_owned(),
            values.into_iter().map(str::to_owned).collect(),
        )
    })
    .collect();
    assert_eq!(outcome, expected);
}
