//! Responses to the MTA and their encoding, with the checks that keep them acceptable to Postfix
//! and safe to put in a message or an SMTP reply.

use crate::error::shown;
use crate::flags::{
    SMFIC_OPTNEG, SMFIR_ACCEPT, SMFIR_ADDHEADER, SMFIR_CHGHEADER, SMFIR_CONTINUE, SMFIR_DISCARD,
    SMFIR_INSHEADER, SMFIR_PROGRESS, SMFIR_QUARANTINE, SMFIR_REJECT, SMFIR_REPLYCODE,
    SMFIR_TEMPFAIL,
};
use crate::wire::Packet;
use crate::{EncodeError, OptNeg};

/// Most bytes of a [`Response::ReplyCode`] text: an SMTP reply line is at most 512 bytes with its
/// CRLF (RFC 5321 §4.5.3.1.5).
pub const MAX_REPLY_LENGTH: usize = 510;

/// One response to the MTA.
///
/// Every command that [`needs_response`](crate::Command::needs_response) gets exactly one
/// *final* response ([`Response::is_final`]). At [`EndOfBody`](crate::Command::EndOfBody) the
/// message modifications ([`AddHeader`](Response::AddHeader),
/// [`InsertHeader`](Response::InsertHeader), [`ChangeHeader`](Response::ChangeHeader),
/// [`Quarantine`](Response::Quarantine)) and [`Progress`](Response::Progress) come first, then
/// the final one. What Postfix 3.7 does with each is documented on the variant (and checked
/// against a real Postfix in this crate's `tests/postfix.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Response {
    /// `O`: the answer to the MTA's [`Command::OptNeg`](crate::Command::OptNeg): version,
    /// actions needed, protocol bits wanted (see [`negotiate`](crate::negotiate)).
    OptNeg(OptNeg),
    /// `c`: go on (to the next command; at end of body: deliver, with the modifications sent).
    Continue,
    /// `a`: accept: at connect or `HELO` no more commands for this connection, later no more for
    /// this message. The message is delivered with the modifications sent so far.
    Accept,
    /// `r`: reject the command: Postfix answers `550 5.7.1 Command rejected`; at `RCPT` only that
    /// recipient is rejected; at connect or `HELO` every later command of the session is.
    Reject,
    /// `t`: temporary failure: Postfix answers `451 4.7.1 Service unavailable - try again
    /// later`.
    Tempfail,
    /// `d`: accept the message and throw it away (not allowed at connect or `HELO`).
    Discard,
    /// `y`: reject (or temporarily fail) the command with this SMTP reply, e.g.
    /// `550 5.7.1 Blocked by policy`: a code `4xx` or `5xx`, a space, and text; an enhanced
    /// status code at the start of the text must have the code's class (`5.x.x` with `5xx`).
    /// The text is what the client sees: `%` is doubled on the wire (sendmail uses the text as a
    /// format string, Postfix undoes the doubling). Refused: CR, LF or another control
    /// character but TAB, non-ASCII text (RFC 5321 `textstring`), more than
    /// [`MAX_REPLY_LENGTH`] bytes.
    ReplyCode(String),
    /// `q`: put the message in quarantine (Postfix: its hold queue) for this reason (Postfix
    /// ignores the reason). Not final: a final response must follow. Needs
    /// [`SMFIF_QUARANTINE`](crate::flags::SMFIF_QUARANTINE). The reason must be non-empty,
    /// without control characters.
    Quarantine(String),
    /// `h`: append a header after the message's others. Needs
    /// [`SMFIF_ADDHDRS`](crate::flags::SMFIF_ADDHDRS).
    AddHeader {
        /// The name: printable ASCII without `:` (no space or control character).
        name: String,
        /// The value, without the space after the colon (Postfix adds it): no CR, LF, NUL or
        /// other control character but TAB, so it is one line.
        value: String,
    },
    /// `i`: insert a header at position `index` among all headers (0: first). Needs
    /// [`SMFIF_ADDHDRS`](crate::flags::SMFIF_ADDHDRS).
    InsertHeader {
        /// Where: the number of headers before the new one.
        index: u32,
        /// The name, as for [`AddHeader`](Response::AddHeader).
        name: String,
        /// The value, as for [`AddHeader`](Response::AddHeader).
        value: String,
    },
    /// `m`: replace the value of the `index`-th header named `name` (1-based, counted among the
    /// headers of that name, case-insensitively, as the filter saw them); an empty value deletes
    /// the header. Needs [`SMFIF_CHGHDRS`](crate::flags::SMFIF_CHGHDRS).
    ChangeHeader {
        /// Which of the headers named `name`, from 1.
        index: u32,
        /// The name, as for [`AddHeader`](Response::AddHeader).
        name: String,
        /// The new value, as for [`AddHeader`](Response::AddHeader); empty deletes the header.
        value: String,
    },
    /// `p`: still working: the MTA restarts its timeout. Not final.
    Progress,
}

impl Response {
    /// The response's code on the wire (`b'c'`, `b'y'`, …; `b'O'` for the negotiation).
    pub fn code(&self) -> u8 {
        match self {
            Response::OptNeg(_) => SMFIC_OPTNEG,
            Response::Continue => SMFIR_CONTINUE,
            Response::Accept => SMFIR_ACCEPT,
            Response::Reject => SMFIR_REJECT,
            Response::Tempfail => SMFIR_TEMPFAIL,
            Response::Discard => SMFIR_DISCARD,
            Response::ReplyCode(_) => SMFIR_REPLYCODE,
            Response::Quarantine(_) => SMFIR_QUARANTINE,
            Response::AddHeader { .. } => SMFIR_ADDHEADER,
            Response::InsertHeader { .. } => SMFIR_INSHEADER,
            Response::ChangeHeader { .. } => SMFIR_CHGHEADER,
            Response::Progress => SMFIR_PROGRESS,
        }
    }

    /// Whether this response ends the MTA's wait for an answer to its command:
    /// [`Continue`](Response::Continue), [`Accept`](Response::Accept),
    /// [`Reject`](Response::Reject), [`Tempfail`](Response::Tempfail),
    /// [`Discard`](Response::Discard), [`ReplyCode`](Response::ReplyCode) and
    /// [`OptNeg`](Response::OptNeg). The others (modifications, quarantine, progress) must be
    /// followed by a final one.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Response::OptNeg(_)
                | Response::Continue
                | Response::Accept
                | Response::Reject
                | Response::Tempfail
                | Response::Discard
                | Response::ReplyCode(_)
        )
    }
}

/// Append the packet of `response` to `out`.
///
/// The texts are checked first (see each [`Response`] variant); a refused response writes
/// nothing and returns the [`EncodeError`] naming the offending text.
///
/// ```
/// use allowgate_milter::{Response, encode_response};
/// let mut out = Vec::new();
/// encode_response(&Response::ReplyCode("550 5.7.1 100% blocked".into()), &mut out)?;
/// assert_eq!(out, b"\0\0\0\x19y550 5.7.1 100%% blocked\0");
///
/// let forged = Response::AddHeader { name: "X-A".into(), value: "1\r\nX-Allowgate: clean".into() };
/// assert!(encode_response(&forged, &mut out).is_err());
/// # Ok::<(), allowgate_milter::EncodeError>(())
/// ```
pub fn encode_response(response: &Response, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match response {
        Response::ReplyCode(text) => check_reply(text)?,
        Response::Quarantine(reason) => check_quarantine_reason(reason)?,
        Response::AddHeader { name, value } | Response::InsertHeader { name, value, .. } => {
            check_header(name, value)?;
        }
        Response::ChangeHeader { index, name, value } => {
            check_header(name, value)?;
            if *index == 0 {
                return Err(EncodeError::ZeroHeaderIndex { name: shown(name) });
            }
        }
        _ => {}
    }
    let mut packet = Packet::start(out, response.code());
    match response {
        Response::OptNeg(optneg) => {
            packet.u32(optneg.version);
            packet.u32(optneg.actions);
            packet.u32(optneg.protocol);
        }
        Response::ReplyCode(text) => {
            packet.string(&text.replace('%', "%%"), "reply")?;
        }
        Response::Quarantine(reason) => packet.string(reason, "reason")?,
        Response::AddHeader { name, value } => {
            packet.string(name, "header name")?;
            packet.string(value, "header value")?;
        }
        Response::InsertHeader { index, name, value }
        | Response::ChangeHeader { index, name, value } => {
            packet.u32(*index);
            packet.string(name, "header name")?;
            packet.string(value, "header value")?;
        }
        Response::Continue
        | Response::Accept
        | Response::Reject
        | Response::Tempfail
        | Response::Discard
        | Response::Progress => {}
    }
    packet.finish()
}

/// A reply Postfix takes as one SMTP reply line (milter8.c checks the code and the enhanced
/// code's class; the rest keeps it one printable line).
fn check_reply(text: &str) -> Result<(), EncodeError> {
    let refuse = |reason| {
        Err(EncodeError::InvalidReply {
            text: shown(text),
            reason,
        })
    };
    let bytes = text.as_bytes();
    if bytes.len() > MAX_REPLY_LENGTH {
        return refuse("longer than 510 bytes (an SMTP reply line is at most 512 with CRLF)");
    }
    if !text.is_ascii() {
        return refuse("not ASCII (SMTP reply text is ASCII)");
    }
    if bytes.iter().any(|&b| b.is_ascii_control() && b != b'\t') {
        return refuse("holds a control character (CR, LF, NUL, …); it must be one line");
    }
    let class = match bytes.first() {
        Some(class @ (b'4' | b'5')) => *class,
        _ => return refuse("the code must be 4xx or 5xx"),
    };
    if !(bytes.len() >= 3 && bytes[1].is_ascii_digit() && bytes[2].is_ascii_digit()) {
        return refuse("it must start with a three-digit code");
    }
    if bytes.get(3) != Some(&b' ') {
        return refuse("the code must be followed by a space and text");
    }
    let reply_text = &text[4..];
    if reply_text.starts_with(|c: char| c.is_ascii_digit()) {
        let enhanced = reply_text.split(' ').next().unwrap_or_default();
        if !is_enhanced_code(enhanced, class) {
            return refuse(
                "text starting with a digit must start with an enhanced status code \
                 of the reply's class (e.g. 550 5.7.1)",
            );
        }
    }
    Ok(())
}

/// `class.subject.detail` (RFC 3463): the reply's class, then 1–3 digits, then 1–3 digits.
fn is_enhanced_code(code: &str, class: u8) -> bool {
    let mut parts = code.split('.');
    let (Some(first), Some(subject), Some(detail), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let digits =
        |part: &str| (1..=3).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
    first.as_bytes() == [class] && digits(subject) && digits(detail)
}

fn check_quarantine_reason(reason: &str) -> Result<(), EncodeError> {
    if reason.is_empty() || reason.chars().any(char::is_control) {
        return Err(EncodeError::InvalidQuarantineReason {
            reason: shown(reason),
        });
    }
    Ok(())
}

/// A header name (RFC 5322 `ftext`: printable ASCII but `:`) and a one-line value.
fn check_header(name: &str, value: &str) -> Result<(), EncodeError> {
    let valid_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if !valid_name {
        return Err(EncodeError::InvalidHeaderName { name: shown(name) });
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(EncodeError::InvalidHeaderValue {
            name: shown(name),
            value: shown(value),
        });
    }
    Ok(())
}
