//! The milter (Postfix `smtpd_milters`, protocol 6): the whole message, over the sans-IO codec
//! of `allowgate-milter`.
//!
//! At `RCPT` it decides for that recipient like the policy server does and refuses a blocked
//! recipient (`550 5.7.1`, that recipient only). At the end of the message it has the headers
//! and the body: header senders by priority, the `Received:` walk past internal relays, body
//! domains and IPs, every accepted recipient's tenant. Then:
//! - every `X-Allowgate` header that arrived (forged by an outsider, or prepended by the policy
//!   server at RCPT) is deleted, and one is added: the final decision's (DESIGN §5.3), plus the
//!   `exchange` profile's headers when configured (incoming copies of those are deleted too);
//! - a block rejects the message (`550 5.7.1`), a quarantine holds it (Postfix's hold queue), a
//!   deferral (greylisting) answers `451 4.7.1`, anything else accepts it.
//!
//! A protocol error or internal trouble closes the connection; Postfix then applies
//! `milter_default_action` (`accept` in the recommended setup).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use allowgate_core::{Action, CheckResults, Context, MessageFacts, decide, exemptions};
use allowgate_milter::{Command, Decoder, Limits, Response, encode_response, envelope_address};
use allowgate_types::{CheckId, Domain, EmailAddress, SenderSource, parse_ip};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::{HeaderProfile, MilterConfig};
use crate::history::{Event, Stage};
use crate::metrics::RequestKind;
use crate::reload::Shared;

/// Our header.
pub const HEADER: &str = "X-Allowgate";
/// The `exchange` profile's headers (seed 001), each with the check whose bypass sets it.
pub const EXCHANGE_HEADERS: [(&str, CheckId, &str); 4] = [
    ("X-MS-Exchange-Organization-SCL", CheckId::Spam, "-1"),
    (
        "X-MS-Exchange-Organization-BypassClutter",
        CheckId::Graymail,
        "true",
    ),
    (
        "X-MS-Exchange-Organization-SkipSafeLinksProcessing",
        CheckId::SafeLinks,
        "1",
    ),
    (
        "X-MS-Exchange-Organization-SkipSafeAttachmentProcessing",
        CheckId::SafeAttachments,
        "1",
    ),
];

/// Sender headers kept beyond `max_headers` and `max_message_bytes`, so that stuffing a
/// message with headers cannot hide a blocked `From:` (the engine reads at most 64 header
/// senders anyway).
const EXTRA_SENDER_HEADERS: usize = 64;
/// The longest sender header kept beyond the caps.
const EXTRA_SENDER_HEADER_BYTES: usize = 4096;

/// One message transaction's state.
#[derive(Debug, Default)]
struct Message {
    mail_from: Option<EmailAddress>,
    recipients: Vec<EmailAddress>,
    headers: Vec<(String, String)>,
    /// Bytes of `headers`; headers and body share `max_message_bytes`.
    header_bytes: usize,
    /// Sender headers kept beyond the caps.
    extra_senders: usize,
    /// Our headers that arrived, by name, kept or not: every copy is deleted, unless exactly
    /// the one the decision wants arrived.
    ours: Vec<OurHeader>,
    body: Vec<u8>,
    /// Headers or body bytes dropped beyond the caps.
    truncated: bool,
    queue_id: Option<String>,
}

/// The copies of one of our headers that arrived.
#[derive(Debug)]
struct OurHeader {
    /// The name as it arrived (the first copy's spelling).
    name: String,
    /// How many copies.
    count: u32,
    /// The first copy's value, when short.
    first: Option<String>,
}

/// Values of our headers kept for comparison at most this long.
const OUR_VALUE_BYTES: usize = 1024;

/// The header changes that leave exactly `wanted` of our headers: every copy that arrived is
/// deleted (the last first, so that the indexes of the others do not move) and the wanted one
/// added — except when exactly the wanted one arrived (the policy server's PREPEND for a
/// single recipient, most of the time), which is left as it is: an edit costs Postfix a
/// rewrite of the queue file.
fn header_edits(arrived: &[OurHeader], wanted: &[(&str, String)]) -> Vec<Response> {
    let mut deletes = Vec::new();
    let mut adds = Vec::new();
    let want = |name: &str| {
        wanted
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    for a in arrived {
        if a.count == 1
            && a.first
                .as_deref()
                .is_some_and(|v| Some(v.trim()) == want(&a.name))
        {
            continue;
        }
        for index in (1..=a.count).rev() {
            deletes.push(Response::ChangeHeader {
                index,
                name: a.name.clone(),
                value: String::new(),
            });
        }
    }
    for (name, value) in wanted {
        let kept = arrived.iter().any(|a| {
            a.name.eq_ignore_ascii_case(name)
                && a.count == 1
                && a.first.as_deref().map(str::trim) == Some(value.as_str())
        });
        if !kept {
            adds.push(Response::AddHeader {
                name: (*name).to_string(),
                value: value.clone(),
            });
        }
    }
    deletes.extend(adds);
    deletes
}

/// Whether a header is one of ours (`X-Allowgate` or the `exchange` profile's).
fn is_ours(name: &str) -> bool {
    name.eq_ignore_ascii_case(HEADER)
        || EXCHANGE_HEADERS
            .iter()
            .any(|(h, _, _)| name.eq_ignore_ascii_case(h))
}

/// Whether a header names a sender the engine reads (`From:`, `Sender:`, `Return-Path:`, …).
fn is_sender_header(name: &str) -> bool {
    SenderSource::PRIORITY
        .iter()
        .any(|s| *s != SenderSource::MailFrom && name.eq_ignore_ascii_case(s.as_str()))
}

impl Message {
    /// Keep a header within the caps; beyond them keep only sender headers (a few, short).
    /// Our own names are counted whether kept or not.
    fn header(&mut self, settings: &MilterConfig, name: String, value: String) {
        if is_ours(&name) {
            match self
                .ours
                .iter_mut()
                .find(|h| h.name.eq_ignore_ascii_case(&name))
            {
                Some(h) => h.count = h.count.saturating_add(1),
                None => self.ours.push(OurHeader {
                    name: name.clone(),
                    count: 1,
                    first: (value.len() <= OUR_VALUE_BYTES).then(|| value.clone()),
                }),
            }
        }
        let size = name.len() + value.len() + 4;
        if self.headers.len() < settings.max_headers
            && self.header_bytes + size <= settings.max_message_bytes
        {
            self.header_bytes += size;
            self.headers.push((name, value));
        } else if is_sender_header(&name)
            && self.extra_senders < EXTRA_SENDER_HEADERS
            && value.len() <= EXTRA_SENDER_HEADER_BYTES
        {
            self.extra_senders += 1;
            self.headers.push((name, value));
        } else {
            self.truncated = true;
        }
    }
}

/// One connection's state.
#[derive(Debug, Default)]
struct Session {
    /// The protocol bits agreed with the MTA: which commands get no answer.
    protocol: u32,
    client_ip: Option<IpAddr>,
    client_name: Option<Domain>,
    helo: Option<String>,
    message: Message,
}

/// Accept milter connections until `shutdown` turns true, then finish what is in progress.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    settings: Arc<MilterConfig>,
    shutdown: watch::Receiver<bool>,
) {
    let max_connections = settings.max_connections;
    let for_connections = Arc::clone(&shared);
    crate::listener::accept_loop(
        "milter",
        listener,
        max_connections,
        shared,
        |m| &m.milter_connections,
        shutdown,
        move |stream, peer, shutdown| {
            let shared = Arc::clone(&for_connections);
            let settings = Arc::clone(&settings);
            async move { connection(stream, peer, &shared, &settings, shutdown).await }
        },
    )
    .await;
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    settings: &MilterConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let mut decoder = Decoder::new(Limits::default());
    let mut session = Session::default();
    // Filled by `read_buf` into its spare capacity: a connection per SMTP session, and zeroing
    // 64 KiB for each showed in the profile.
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut out = Vec::with_capacity(1024);
    let idle = Duration::from_secs(settings.idle_timeout_s);
    loop {
        out.clear();
        loop {
            match decoder.next_command() {
                Ok(Some(command)) => {
                    let quit = matches!(command, Command::Quit);
                    let answered = allowgate_milter::needs_reply(session.protocol, &command);
                    let mut responses = handle(shared, settings, &mut session, command);
                    if !answered {
                        // The MTA reads no answer to this command (a "no reply" bit was
                        // agreed); our answers there are only `continue`.
                        responses.retain(|r| !matches!(r, Response::Continue));
                    }
                    for r in &responses {
                        if let Err(e) = encode_response(r, &mut out) {
                            tracing::error!(%peer, error = %e, "milter response could not be encoded");
                            return;
                        }
                    }
                    if quit {
                        let _ = stream.write_all(&out).await;
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    shared
                        .metrics
                        .milter_protocol_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, error = %e, "milter protocol error; connection closed");
                    let _ = stream.write_all(&out).await;
                    return;
                }
            }
        }
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return;
        }
        if *shutdown.borrow() && decoder.buffered() == 0 && session.message.recipients.is_empty() {
            return;
        }
        tokio::select! {
            r = tokio::time::timeout(idle, async {
                buf.clear();
                stream.read_buf(&mut buf).await
            }) => match r {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(n)) => {
                    // Acknowledge at once what arrived. With "no reply" agreed, Postfix
                    // writes several packets in a row (headers, body, end of message) and
                    // its Nagle algorithm holds each small one until the last is
                    // acknowledged; a delayed acknowledgement (up to 40 ms) stalled every
                    // message. Linux turns quick-ack mode off again by itself: set per read.
                    let _ = rustix::net::sockopt::set_tcp_quickack(&stream, true);
                    decoder.feed(&buf[..n]);
                }
                Err(_) => {
                    shared.metrics.milter_timeouts.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
            _ = shutdown.changed(), if !*shutdown.borrow() => {}
        }
    }
}

/// The responses to one command (most get one; the end of a message gets its header changes
/// and then its verdict; macros and abort get none).
fn handle(
    shared: &Shared,
    settings: &MilterConfig,
    session: &mut Session,
    command: Command,
) -> Vec<Response> {
    match command {
        Command::OptNeg(offer) => match allowgate_milter::negotiate(&offer) {
            Ok(ours) => {
                session.protocol = ours.protocol;
                vec![Response::OptNeg(ours)]
            }
            Err(e) => {
                // An MTA that cannot do what we need: say nothing it could misread.
                tracing::warn!(error = %e, "milter negotiation failed");
                vec![Response::Tempfail]
            }
        },
        Command::Macros { pairs, .. } => {
            if let Some(id) = allowgate_milter::macro_value(&pairs, "i") {
                session.message.queue_id = Some(id.to_string());
            }
            if let Some(name) = allowgate_milter::macro_value(&pairs, "client_name") {
                session.client_name = verified_name(name);
            }
            Vec::new()
        }
        Command::Connect(connect) => {
            session.client_ip = connect.ip();
            if session.client_name.is_none() {
                session.client_name = connect.host_name().and_then(verified_name);
            }
            vec![Response::Continue]
        }
        Command::Helo(name) => {
            session.helo = Some(name);
            vec![Response::Continue]
        }
        Command::Mail(args) => {
            let queue_id = session.message.queue_id.take();
            session.message = Message {
                queue_id,
                ..Message::default()
            };
            session.message.mail_from = args
                .first()
                .map(|a| envelope_address(a))
                .filter(|a| !a.is_empty())
                .and_then(|a| EmailAddress::parse(a).ok());
            vec![Response::Continue]
        }
        Command::Rcpt(args) => {
            let Some(rcpt) = args
                .first()
                .map(|a| envelope_address(a))
                .and_then(|a| EmailAddress::parse(a).ok())
            else {
                return vec![Response::Continue];
            };
            vec![rcpt_stage(shared, settings, session, rcpt)]
        }
        Command::Header { name, value } => {
            session.message.header(settings, name, value);
            vec![Response::Continue]
        }
        Command::Body(bytes) => {
            let room = settings
                .max_message_bytes
                .saturating_sub(session.message.header_bytes + session.message.body.len());
            session.message.truncated |= bytes.len() > room;
            session
                .message
                .body
                .extend_from_slice(&bytes[..bytes.len().min(room)]);
            vec![Response::Continue]
        }
        Command::EndOfBody => {
            let responses = end_of_message(shared, settings, session);
            let queue_id = session.message.queue_id.take();
            session.message = Message {
                queue_id,
                ..Message::default()
            };
            responses
        }
        Command::Abort => {
            session.message = Message::default();
            Vec::new()
        }
        Command::Data | Command::EndOfHeaders | Command::Unknown(_) => vec![Response::Continue],
        Command::Quit | Command::QuitNewConnection => {
            // A new SMTP session may follow on this connection; what was negotiated holds
            // until the MTA negotiates again.
            *session = Session {
                protocol: session.protocol,
                ..Session::default()
            };
            Vec::new()
        }
    }
}

/// Postfix's client name is the verified (forward-confirmed) one, or `unknown`.
fn verified_name(name: &str) -> Option<Domain> {
    let name = name.trim().trim_start_matches('[').trim_end_matches(']');
    if name.is_empty() || name == "unknown" || parse_ip(name).is_ok() {
        return None;
    }
    Domain::parse_from_mail(name).ok()
}

fn context(session: &Session, recipients: Vec<EmailAddress>) -> Option<Context> {
    let mut ctx = Context::new(chrono::Utc::now(), session.client_ip?, recipients);
    ctx.client_host = session.client_name.clone();
    ctx.helo = session.helo.clone();
    ctx.mail_from = session.message.mail_from.clone();
    Some(ctx)
}

/// A recipient's decision at RCPT: refuse it when its tenant blocks the sender.
fn rcpt_stage(
    shared: &Shared,
    settings: &MilterConfig,
    session: &mut Session,
    rcpt: EmailAddress,
) -> Response {
    shared.metrics.request(RequestKind::Rcpt);
    let Some(ctx) = context(session, vec![rcpt.clone()]) else {
        session.message.recipients.push(rcpt);
        return Response::Continue;
    };
    let snapshot = shared.snapshot.load();
    let found = exemptions(&snapshot, &ctx);
    let results = CheckResults::new();
    let (action, _) = decide(&found, &results).recipient(0);
    if action == Action::Reject {
        return Response::ReplyCode(format!("550 {}", settings.reject_text));
    }
    session.message.recipients.push(rcpt);
    Response::Continue
}

/// The message's decision: header changes, then the verdict.
fn end_of_message(
    shared: &Shared,
    settings: &MilterConfig,
    session: &mut Session,
) -> Vec<Response> {
    shared.metrics.request(RequestKind::EndOfMessage);
    let started = Instant::now();
    let snapshot = shared.snapshot.load_full();
    // Parsing the body is most of a message's cost: skip it when no entry looks at bodies.
    let raw = raw_message(&session.message, snapshot.reads_body());
    let facts = MessageFacts::parse(&raw);
    let Some(mut ctx) = context(session, session.message.recipients.clone()) else {
        // No client address: nothing to match; accept unchanged but for our headers, which
        // only we may write.
        let mut responses = header_edits(&session.message.ours, &[]);
        responses.push(Response::Continue);
        return responses;
    };
    ctx.message = Some(facts);
    let results = CheckResults::new();
    let found = exemptions(&snapshot, &ctx);
    let decision = decide(&found, &results);
    let mut header = String::new();
    let _ = decision.write_header(&mut header);
    let status = decision.status();
    // The refusals change no header: the message is not taken.
    let (wanted, verdict): (Vec<(&str, String)>, Vec<Response>) = match decision.action() {
        Action::Reject => (
            Vec::new(),
            vec![Response::ReplyCode(format!("550 {}", settings.reject_text))],
        ),
        Action::Defer => (
            Vec::new(),
            vec![Response::ReplyCode(
                "451 4.7.1 Greylisted, try again later".into(),
            )],
        ),
        Action::Quarantine => (
            vec![(HEADER, header)],
            vec![
                Response::Quarantine("quarantined by the recipient's mail policy".into()),
                Response::Continue,
            ],
        ),
        Action::Tag | Action::Accept => {
            let mut wanted = vec![(HEADER, header)];
            if settings.header_profile == HeaderProfile::Exchange {
                let bypassed = decision.bypassed();
                for (name, check, value) in EXCHANGE_HEADERS {
                    if bypassed.contains(check) {
                        wanted.push((name, value.to_string()));
                    }
                }
            }
            (wanted, vec![Response::Continue])
        }
    };
    let mut responses = if matches!(decision.action(), Action::Reject | Action::Defer) {
        Vec::new()
    } else {
        header_edits(&session.message.ours, &wanted)
    };
    responses.extend(verdict);
    shared.metrics.decision(status, started.elapsed());
    drop(found);
    shared.history.record(Event {
        snapshot,
        context: ctx,
        results,
        queue_id: session.message.queue_id.clone(),
        stage: Stage::Message,
    });
    responses
}

/// The message as received, for the message parser: its headers, and its body when `body`.
fn raw_message(message: &Message, body: bool) -> Vec<u8> {
    let mut raw = Vec::with_capacity(message.body.len() + 64 * message.headers.len());
    for (name, value) in &message.headers {
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value.as_bytes());
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    if body {
        raw.extend_from_slice(&message.body);
    }
    raw
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrived(name: &str, count: u32, first: &str) -> OurHeader {
        OurHeader {
            name: name.into(),
            count,
            first: Some(first.into()),
        }
    }

    fn del(name: &str, index: u32) -> Response {
        Response::ChangeHeader {
            index,
            name: name.into(),
            value: String::new(),
        }
    }

    fn add(name: &str, value: &str) -> Response {
        Response::AddHeader {
            name: name.into(),
            value: value.into(),
        }
    }

    /// (name, what arrived, what is wanted, the edits expected).
    type EditCase = (
        &'static str,
        Vec<OurHeader>,
        Vec<(&'static str, String)>,
        Vec<Response>,
    );

    #[test]
    fn header_edits_leave_exactly_the_wanted_headers() {
        let clean = "status=clean; bypass=spam; entries=2";
        let scl = "X-MS-Exchange-Organization-SCL";
        #[rustfmt::skip]
        let cases: Vec<EditCase> = vec![
            ("nothing arrived", vec![], vec![(HEADER, clean.into())], vec![add(HEADER, clean)]),
            ("the policy server's header, the same", vec![arrived(HEADER, 1, clean)],
                vec![(HEADER, clean.into())], vec![]),
            ("the same after a space", vec![arrived(HEADER, 1, &format!(" {clean}"))],
                vec![(HEADER, clean.into())], vec![]),
            ("a forged or outdated one", vec![arrived(HEADER, 1, "status=clean; bypass=all")],
                vec![(HEADER, clean.into())], vec![del(HEADER, 1), add(HEADER, clean)]),
            ("one per recipient: all go, the last first",
                vec![arrived(HEADER, 3, clean)], vec![(HEADER, clean.into())],
                vec![del(HEADER, 3), del(HEADER, 2), del(HEADER, 1), add(HEADER, clean)]),
            ("a value too long to keep is never taken as ours",
                vec![OurHeader { name: HEADER.into(), count: 1, first: None }],
                vec![(HEADER, clean.into())], vec![del(HEADER, 1), add(HEADER, clean)]),
            ("a name in another case", vec![arrived("x-allowgate", 2, clean)],
                vec![(HEADER, clean.into())],
                vec![del("x-allowgate", 2), del("x-allowgate", 1), add(HEADER, clean)]),
            ("a forged Exchange header we do not want",
                vec![arrived(HEADER, 1, clean), arrived(scl, 1, "-1")],
                vec![(HEADER, clean.into())], vec![del(scl, 1)]),
            ("an Exchange header we want, and it arrived the same",
                vec![arrived(scl, 1, "-1")], vec![(HEADER, clean.into()), (scl, "-1".into())],
                vec![add(HEADER, clean)]),
            ("nothing wanted: every copy goes",
                vec![arrived(HEADER, 1, clean), arrived(scl, 2, "-1")], vec![],
                vec![del(HEADER, 1), del(scl, 2), del(scl, 1)]),
        ];
        for (name, arrived, wanted, expected) in cases {
            assert_eq!(header_edits(&arrived, &wanted), expected, "{name}");
        }
    }
}
