//! The Postfix policy server (`check_policy_service`): DESIGN §5.2 over the sans-IO codec of
//! `allowgate-postfix`.
//!
//! One task per connection; connections are persistent (Postfix keeps one per `smtpd`
//! process). At `RCPT` the engine decides for that recipient:
//! - a block entry hits and `blocklist` is not bypassed → `REJECT` with a text that names no
//!   entry (configurable), or `HOLD` when blocks quarantine;
//! - greylisted → `DEFER_IF_PERMIT 4.7.1 Greylisted, try again later`;
//! - exempted (an allow entry matched) → `PREPEND X-Allowgate: status=clean; …`, once per
//!   message (the first exempted recipient of a transaction);
//! - otherwise `DUNNO`.
//!
//! Every other protocol state gets `DUNNO` (`PREPEND` is never sent at `END-OF-MESSAGE`). A
//! request that breaks the protocol or its caps gets no answer: the connection is closed and
//! Postfix applies its `default_action`; other connections are not affected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use allowgate_core::{Action, CheckResults, Context, Status, decide, exemptions};
use allowgate_postfix::{
    Decoder, Limits, PolicyAction, PolicyRequest, ProtocolState, encode_reply,
};
use allowgate_types::{Domain, EmailAddress, parse_ip};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::{PolicyHistory, PolicyServerConfig};
use crate::history::{Event, Stage};
use crate::metrics::RequestKind;
use crate::reload::Shared;

/// The reply to a greylisted recipient (DESIGN §5.2).
const GREYLIST_TEXT: &str = "4.7.1 Greylisted, try again later";
/// The text of a `HOLD` (the message goes to Postfix's hold queue).
const HOLD_TEXT: &str = "quarantined by the recipient's mail policy";

/// What one connection remembers between requests.
#[derive(Debug, Default)]
struct Connection {
    /// The `instance` (message transaction) an `X-Allowgate` header was prepended for.
    prepended_for: Option<String>,
}

/// Accept policy connections on `listener` until `shutdown` turns true; then finish the
/// requests in progress and return.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    settings: Arc<PolicyServerConfig>,
    shutdown: watch::Receiver<bool>,
) {
    let max_connections = settings.max_connections;
    let for_connections = Arc::clone(&shared);
    crate::listener::accept_loop(
        "policy server",
        listener,
        max_connections,
        shared,
        |m| &m.open_connections,
        shutdown,
        move |stream, peer, shutdown| {
            let shared = Arc::clone(&for_connections);
            let settings = Arc::clone(&settings);
            async move { connection(stream, peer, &shared, &settings, shutdown).await }
        },
    )
    .await;
}

/// Serve one connection: requests in, replies out, until the peer closes, a timeout, a
/// protocol error or shutdown.
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    settings: &PolicyServerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let limits = Limits {
        max_request_bytes: settings.max_request_bytes,
        max_attributes: settings.max_attributes,
    };
    let mut decoder = Decoder::new(limits);
    let mut state = Connection::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::with_capacity(512);
    let idle = Duration::from_secs(settings.idle_timeout_s);
    let read = Duration::from_secs(settings.read_timeout_s);
    // One timer and one shutdown wait for the whole connection, not one per request: each new
    // one takes the timer wheel's or the channel's lock twice, and at 100,000 requests a
    // second the worker threads queued on those locks. The timer is set when a request begins
    // to arrive in pieces (its read deadline) and otherwise left alone; when it fires it checks
    // the real deadline — the idle one from the last read, or the read one from the start of
    // the unfinished request — and is set again if that is still ahead.
    let mut last_read = Instant::now();
    let mut begun: Option<Instant> = None;
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    let mut stop = shutdown.clone();
    let stopped = async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    };
    tokio::pin!(stopped);
    let mut stopping = *shutdown.borrow_and_update();
    loop {
        // Answer every complete request buffered, in order.
        out.clear();
        loop {
            match decoder.next_request() {
                Ok(Some(request)) => {
                    let action = answer(shared, settings, &request, &mut state);
                    if let Err(e) = encode_reply(&action, &mut out) {
                        // Internal trouble: no reply, close (Postfix applies default_action).
                        tracing::error!(error = %e, %peer, "policy reply could not be encoded");
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    shared
                        .metrics
                        .protocol_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, error = %e, "policy request refused; connection closed");
                    let _ = stream.write_all(&out).await;
                    return;
                }
            }
        }
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return;
        }
        if stopping && decoder.buffered() == 0 {
            return;
        }
        tokio::select! {
            r = stream.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    last_read = Instant::now();
                    decoder.feed(&buf[..n]);
                    if decoder.buffered() == 0 {
                        begun = None;
                    } else if begun.is_none() {
                        begun = Some(last_read);
                        timer.as_mut().reset((last_read + read).into());
                    }
                }
            },
            () = &mut timer => {
                let deadline = match begun {
                    Some(start) => start + read,
                    None => last_read + idle,
                };
                if Instant::now() >= deadline {
                    shared.metrics.timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, partial = decoder.buffered(), "policy connection timed out");
                    return;
                }
                timer.as_mut().reset(deadline.into());
            },
            () = &mut stopped, if !stopping => stopping = true,
        }
    }
}

/// The reply to one request.
fn answer(
    shared: &Shared,
    settings: &PolicyServerConfig,
    request: &PolicyRequest,
    state: &mut Connection,
) -> PolicyAction {
    let kind = match request.protocol_state() {
        Some(ProtocolState::Rcpt) => RequestKind::Rcpt,
        Some(ProtocolState::EndOfMessage) => RequestKind::EndOfMessage,
        _ => RequestKind::Other,
    };
    shared.metrics.request(kind);
    if !matches!(kind, RequestKind::Rcpt) {
        return PolicyAction::Dunno;
    }
    let started = Instant::now();
    let Some(ctx) = context(request) else {
        // Postfix always sends a client address; without one there is nothing to match, and
        // no exemption is the safe answer.
        return PolicyAction::Dunno;
    };
    let snapshot = shared.snapshot.load_full();
    let found = exemptions(&snapshot, &ctx);
    let results = CheckResults::new();
    let decision = decide(&found, &results);
    let (action, status) = decision.recipient(0);
    let reply = match action {
        Action::Reject => PolicyAction::Reject(settings.reject_text.clone()),
        Action::Defer => PolicyAction::DeferIfPermit(GREYLIST_TEXT.into()),
        Action::Quarantine => PolicyAction::Hold(HOLD_TEXT.into()),
        Action::Tag | Action::Accept if status != Status::Pass => {
            let instance = request.instance().unwrap_or_default();
            if state.prepended_for.as_deref() == Some(instance) && !instance.is_empty() {
                PolicyAction::Dunno
            } else {
                state.prepended_for = Some(instance.to_string());
                let mut header = String::from("X-Allowgate: ");
                let _ = decision.write_header(&mut header);
                PolicyAction::Prepend(header)
            }
        }
        Action::Tag | Action::Accept => PolicyAction::Dunno,
    };
    shared.metrics.decision(status, started.elapsed());
    drop(decision);
    drop(found);
    let refusal = matches!(action, Action::Reject | Action::Defer);
    if refusal || settings.history == PolicyHistory::All {
        let queue_id = request.queue_id().map(str::to_string);
        shared.history.record(Event {
            snapshot,
            context: ctx,
            results,
            queue_id,
            stage: Stage::Rcpt,
        });
    }
    tracing::debug!(
        queue_id = request.queue_id().unwrap_or_default(),
        client = request.client_address().unwrap_or_default(),
        sender = request.sender().unwrap_or_default(),
        recipient = request.recipient().unwrap_or_default(),
        %status,
        %action,
        "policy decision"
    );
    reply
}

/// The engine's context for a request: `None` without a usable client address.
fn context(request: &PolicyRequest) -> Option<Context> {
    let client_ip = parse_ip(request.client_address()?).ok()?;
    let recipients = request
        .recipient()
        .and_then(|r| EmailAddress::parse(r).ok())
        .into_iter()
        .collect();
    let mut ctx = Context::new(chrono::Utc::now(), client_ip, recipients);
    // Postfix's `client_name` is the verified (forward-confirmed) name, or `unknown`.
    ctx.client_host = request
        .client_name()
        .filter(|n| !n.is_empty() && *n != "unknown")
        .and_then(|n| Domain::parse_from_mail(n).ok());
    ctx.helo = request.helo_name().map(str::to_string);
    ctx.mail_from = request
        .sender()
        .filter(|s| !s.is_empty())
        .and_then(|s| EmailAddress::parse(s).ok());
    Some(ctx)
}
