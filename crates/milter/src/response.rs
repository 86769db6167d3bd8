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
    /// `i`: insert a header at position `index` among all the message's headers, counted as
    /// delivered: 0 puts it first, before Postfix's own `Received:` (and before headers a
    /// policy server prepended). Needs [`SMFIF_ADDHDRS`](crate::flags::SMFIF_ADDHDRS).
    InsertHeader {
        /// Where: the number of headers before the new one.
        index: u32,
        /// The name, as for [`AddHeader`](Response::AddHeader).
        name: String,
        /// The value, as for [`AddHeader`](Response::AddHeader).
        value: String,
    },
    /// `m`: replace the value of the `index`-th header named `name`; an empty value deletes
    /// the header. Needs [`SMFIF_CHGHDRS`](crate::flags::SMFIF_CHGHDRS).
    ///
    /// Postfix 3.7: names match case-insensitively (the changed header takes the name as given
    /// here); `index` counts from 1 among the headers of that name the filter was shown, in
    /// message order, *as they are when the change is made*: a header deleted by an earlier
    /// change no longer counts (two deletions at index 1 delete the first two), a header added
    /// by [`AddHeader`](Response::AddHeader) comes after them. Changing a header that is not
    /// there (index past the last) appends it, like [`AddHeader`](Response::AddHeader). To
    /// replace every header of a name by one, delete from the highest index down, then add.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &str) -> Response {
        Response::AddHeader {
            name: name.into(),
            value: value.into(),
        }
    }

    /// Every response, byte for byte as mfdef.h and Postfix's milter8.c read them.
    #[test]
    fn every_response_byte_exact() {
        #[rustfmt::skip]
        let cases: Vec<(&str, Response, &[u8])> = vec![
            ("negotiation", Response::OptNeg(OptNeg { version: 6, actions: 0x31, protocol: 0 }),
                b"\0\0\0\x0dO\0\0\0\x06\0\0\0\x31\0\0\0\0"),
            ("negotiation, every bit", Response::OptNeg(OptNeg { version: 6, actions: 0x1ff, protocol: 0x1f_ffff }),
                b"\0\0\0\x0dO\0\0\0\x06\0\0\x01\xff\0\x1f\xff\xff"),
            ("continue", Response::Continue, b"\0\0\0\x01c"),
            ("accept", Response::Accept, b"\0\0\0\x01a"),
            ("reject", Response::Reject, b"\0\0\0\x01r"),
            ("tempfail", Response::Tempfail, b"\0\0\0\x01t"),
            ("discard", Response::Discard, b"\0\0\0\x01d"),
            ("progress", Response::Progress, b"\0\0\0\x01p"),
            ("reply code", Response::ReplyCode("550 5.7.1 blocked by test".into()),
                b"\0\0\0\x1by550 5.7.1 blocked by test\0"),
            ("reply code, % doubled", Response::ReplyCode("451 4.7.1 100% sure".into()),
                b"\0\0\0\x16y451 4.7.1 100%% sure\0"),
            ("reply code without an enhanced code", Response::ReplyCode("554 no".into()),
                b"\0\0\0\x08y554 no\0"),
            ("reply code with empty text", Response::ReplyCode("421 ".into()),
                b"\0\0\0\x06y421 \0"),
            ("quarantine", Response::Quarantine("held by test".into()),
                b"\0\0\0\x0eqheld by test\0"),
            ("add header", header("X-Test", "1"), b"\0\0\0\x0ahX-Test\x001\0"),
            ("add header, empty value", header("X-Empty", ""), b"\0\0\0\x0ahX-Empty\0\0"),
            ("add header, TAB and UTF-8", header("X-Tab", "a\tb ü"),
                "\0\0\0\x0ehX-Tab\0a\tb ü\0".as_bytes()),
            ("insert header at the top",
                Response::InsertHeader { index: 0, name: "X-A".into(), value: "v".into() },
                b"\0\0\0\x0bi\0\0\0\0X-A\0v\0"),
            ("delete a header",
                Response::ChangeHeader { index: 1, name: "X-A".into(), value: String::new() },
                b"\0\0\0\x0am\0\0\0\x01X-A\0\0"),
            ("change a header",
                Response::ChangeHeader { index: 2, name: "X-Allowgate".into(), value: "status=clean".into() },
                b"\0\0\0\x1em\0\0\0\x02X-Allowgate\0status=clean\0"),
        ];
        for (name, response, bytes) in cases {
            let mut out = b"before".to_vec();
            assert_eq!(encode_response(&response, &mut out), Ok(()), "{name}");
            assert_eq!(&out[..6], b"before", "{name}");
            assert_eq!(&out[6..], bytes, "{name}");
            assert_eq!(response.code(), bytes[4], "{name}");
        }
    }

    #[test]
    fn reply_codes_postfix_would_not_take_are_refused() {
        let at_cap = format!("550 5.7.1 {}", "x".repeat(MAX_REPLY_LENGTH - 10));
        assert_eq!(at_cap.len(), MAX_REPLY_LENGTH);
        let over_cap = format!("{at_cap}x");
        #[rustfmt::skip]
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("a 5xx with an enhanced code", "550 5.7.1 blocked", None),
            ("a 4xx with an enhanced code", "451 4.7.1 later", None),
            ("no enhanced code", "550 blocked", None),
            ("text after the enhanced code is optional", "550 5.7.1", None),
            ("a TAB in the text", "550 5.7.1 a\tb", None),
            ("exactly the cap", &at_cap, None),
            ("one byte over the cap", &over_cap, Some("longer than 510 bytes")),
            ("empty", "", Some("4xx or 5xx")),
            ("a 2xx", "250 2.0.0 ok", Some("4xx or 5xx")),
            ("a 3xx", "354 go", Some("4xx or 5xx")),
            ("a 6xx", "650 x", Some("4xx or 5xx")),
            ("two digits", "55 x", Some("three-digit")),
            ("a letter in the code", "5x0 x", Some("three-digit")),
            ("the code alone", "550", Some("followed by a space")),
            ("a hyphen: a multi-line reply", "550-first", Some("followed by a space")),
            ("no space", "550x", Some("followed by a space")),
            ("CRLF and a second reply", "550 5.7.1 no\r\n250 ok", Some("control character")),
            ("LF", "550 5.7.1 a\nb", Some("control character")),
            ("CR", "550 5.7.1 a\rb", Some("control character")),
            ("NUL", "550 5.7.1 a\0b", Some("control character")),
            ("ESC", "550 5.7.1 \u{1b}[2J", Some("control character")),
            ("DEL", "550 5.7.1 \u{7f}", Some("control character")),
            ("non-ASCII", "550 5.7.1 bücher", Some("not ASCII")),
            ("enhanced code of another class", "550 4.7.1 x", Some("enhanced status code")),
            ("enhanced code of class 2", "550 2.0.0 x", Some("enhanced status code")),
            ("enhanced code with two parts", "550 5.7 x", Some("enhanced status code")),
            ("enhanced code with four parts", "550 5.7.1.1 x", Some("enhanced status code")),
            ("enhanced code with a long part", "550 5.7.1234 x", Some("enhanced status code")),
            ("enhanced code with an empty part", "550 5..1 x", Some("enhanced status code")),
            ("a digit that starts no enhanced code", "550 5 of them", Some("enhanced status code")),
        ];
        for (name, text, refused) in cases {
            let mut out = b"kept".to_vec();
            let result = encode_response(&Response::ReplyCode((*text).to_owned()), &mut out);
            match refused {
                None => assert_eq!(result, Ok(()), "{name}"),
                Some(reason) => {
                    let Err(EncodeError::InvalidReply {
                        text: shown_text,
                        reason: why,
                    }) = result
                    else {
                        panic!("{name}: {result:?}");
                    };
                    assert!(why.contains(reason), "{name}: {why}");
                    assert_eq!(shown_text, shown(text), "{name}");
                    assert_eq!(out, b"kept", "{name}");
                }
            }
        }
    }

    #[test]
    fn hostile_headers_are_refused_and_nothing_is_written() {
        let name_error = |name: &str| EncodeError::InvalidHeaderName { name: shown(name) };
        let value_error = |name: &str, value: &str| EncodeError::InvalidHeaderValue {
            name: shown(name),
            value: shown(value),
        };
        #[rustfmt::skip]
        let cases: Vec<(&str, &str, &str, Option<EncodeError>)> = vec![
            ("plain", "X-Allowgate", "status=clean; entries=12", None),
            ("every printable name byte but :", "!#$%&'*+-.^_`|~09AZaz", "v", None),
            ("empty name", "", "v", Some(name_error(""))),
            ("space in the name", "X Allowgate", "v", Some(name_error("X Allowgate"))),
            ("colon in the name", "X-A: forged", "v", Some(name_error("X-A: forged"))),
            ("TAB in the name", "X\tA", "v", Some(name_error("X\tA"))),
            ("CRLF in the name", "X\r\nBcc", "v", Some(name_error("X\r\nBcc"))),
            ("DEL in the name", "X\u{7f}", "v", Some(name_error("X\u{7f}"))),
            ("non-ASCII name", "X-Bücher", "v", Some(name_error("X-Bücher"))),
            ("NUL in the name", "X\0", "v", Some(name_error("X\0"))),
            ("CRLF and a forged header", "X-A", "1\r\nX-Allowgate: status=clean",
                Some(value_error("X-A", "1\r\nX-Allowgate: status=clean"))),
            ("LF", "X-A", "a\nb", Some(value_error("X-A", "a\nb"))),
            ("folding is refused too", "X-A", "a\n\tb", Some(value_error("X-A", "a\n\tb"))),
            ("CR", "X-A", "a\rb", Some(value_error("X-A", "a\rb"))),
            ("NUL: would cut the value", "X-A", "a\0b", Some(value_error("X-A", "a\0b"))),
            ("ESC", "X-A", "\u{1b}[2J", Some(value_error("X-A", "\u{1b}[2J"))),
            ("DEL", "X-A", "\u{7f}", Some(value_error("X-A", "\u{7f}"))),
            ("C1 NEL", "X-A", "a\u{85}b", Some(value_error("X-A", "a\u{85}b"))),
            ("TAB is fine", "X-A", "a\tb", None),
            ("UTF-8 is fine", "X-A", "Grüße", None),
        ];
        for (case, name, value, expected) in cases {
            let responses = [
                Response::AddHeader {
                    name: name.into(),
                    value: value.into(),
                },
                Response::InsertHeader {
                    index: 3,
                    name: name.into(),
                    value: value.into(),
                },
                Response::ChangeHeader {
                    index: 1,
                    name: name.into(),
                    value: value.into(),
                },
            ];
            for response in &responses {
                let mut out = b"kept".to_vec();
                let result = encode_response(response, &mut out);
                match &expected {
                    None => assert_eq!(result, Ok(()), "{case}: {response:?}"),
                    Some(error) => {
                        assert_eq!(result.as_ref(), Err(error), "{case}: {response:?}");
                        assert_eq!(out, b"kept", "{case}: {response:?}");
                    }
                }
            }
        }
        // Change at index 0: the index counts from 1.
        let mut out = Vec::new();
        let zero = Response::ChangeHeader {
            index: 0,
            name: "X-A".into(),
            value: String::new(),
        };
        assert_eq!(
            encode_response(&zero, &mut out),
            Err(EncodeError::ZeroHeaderIndex { name: "X-A".into() })
        );
        assert!(out.is_empty());
    }

    #[test]
    fn quarantine_reasons_are_checked() {
        let cases: &[(&str, bool)] = &[
            ("held by allowgate", true),
            ("Grüße", true),
            ("", false),
            ("a\nb", false),
            ("a\r\n", false),
            ("a\0b", false),
            ("\u{1b}", false),
            ("a\tb", false),
        ];
        for (reason, valid) in cases {
            let mut out = Vec::new();
            let result = encode_response(&Response::Quarantine((*reason).into()), &mut out);
            if *valid {
                assert_eq!(result, Ok(()), "{reason:?}");
            } else {
                assert_eq!(
                    result,
                    Err(EncodeError::InvalidQuarantineReason {
                        reason: shown(reason)
                    }),
                    "{reason:?}"
                );
                assert!(out.is_empty());
            }
        }
    }

    #[test]
    fn final_responses() {
        let finals = b"Ocartdy";
        let all = [
            Response::OptNeg(OptNeg {
                version: 6,
                actions: 0,
                protocol: 0,
            }),
            Response::Continue,
            Response::Accept,
            Response::Reject,
            Response::Tempfail,
            Response::Discard,
            Response::ReplyCode(String::new()),
            Response::Quarantine(String::new()),
            header("a", "b"),
            Response::InsertHeader {
                index: 0,
                name: String::new(),
                value: String::new(),
            },
            Response::ChangeHeader {
                index: 0,
                name: String::new(),
                value: String::new(),
            },
            Response::Progress,
        ];
        let codes: Vec<u8> = all.iter().map(Response::code).collect();
        assert_eq!(codes, b"Ocartdyqhimp");
        for response in &all {
            assert_eq!(
                response.is_final(),
                finals.contains(&response.code()),
                "{response:?}"
            );
        }
    }
}
