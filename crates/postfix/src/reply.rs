//! Replies: one `action=…` line and the empty line that ends it.

use crate::EncodeError;
use crate::error::shown;

/// Most bytes of an action's text (after the keyword and its space). Longer text is cut at a
/// character boundary. 1,000 keeps a `PREPEND` header within the 998 characters a header line
/// may have (RFC 5322 §2.1.1) once Postfix adds its line end.
pub const MAX_REPLY_TEXT: usize = 1000;

/// What Postfix should do with the request (SMTPD_POLICY_README; access(5) actions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyAction {
    /// `OK`: accept, skipping the rest of this restriction list.
    Ok,
    /// `DUNNO`: no opinion; Postfix goes on with its next restriction.
    Dunno,
    /// `REJECT text`: the text is e.g. `5.7.1 Sender blocked` (may be empty, then Postfix uses
    /// its own).
    Reject(String),
    /// `DEFER_IF_PERMIT text`: a temporary refusal, unless a later restriction rejects; the
    /// text is e.g. `4.7.1 Greylisted, try again later`.
    DeferIfPermit(String),
    /// `HOLD text`: accept, and keep the message on the hold queue.
    Hold(String),
    /// `PREPEND Header-Name: value`: accept, adding this header. The string is the header,
    /// `Header-Name: value`. Not allowed at `END-OF-MESSAGE` (Postfix ignores it there).
    Prepend(String),
}

/// Append the reply `action=…\n\n` for `action` to `out`.
///
/// Text from anywhere is made safe first: every control character (CR, LF, NUL, ESC, DEL, the
/// C1 controls) becomes a space, so no text can end the reply early or add a line to it;
/// spaces at either end are removed; then the text is cut to [`MAX_REPLY_TEXT`] bytes at a
/// character boundary. An empty text leaves only the keyword (`action=REJECT`).
///
/// A [`PolicyAction::Prepend`] header must then be `Name:` and a value (which may be empty),
/// the name one or more printable ASCII characters other than space and `:`; otherwise
/// [`EncodeError::InvalidHeader`] is returned and nothing is written.
///
/// ```
/// use allowgate_postfix::{PolicyAction, encode_reply};
/// let mut out = Vec::new();
/// encode_reply(&PolicyAction::Reject("5.7.1 No\r\n\r\naction=OK".into()), &mut out)?;
/// assert_eq!(out, b"action=REJECT 5.7.1 No    action=OK\n\n");
/// # Ok::<(), allowgate_postfix::EncodeError>(())
/// ```
pub fn encode_reply(action: &PolicyAction, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let (keyword, text) = match action {
        PolicyAction::Ok => ("OK", None),
        PolicyAction::Dunno => ("DUNNO", None),
        PolicyAction::Reject(text) => ("REJECT", Some(text)),
        PolicyAction::DeferIfPermit(text) => ("DEFER_IF_PERMIT", Some(text)),
        PolicyAction::Hold(text) => ("HOLD", Some(text)),
        PolicyAction::Prepend(text) => ("PREPEND", Some(text)),
    };
    let text = text.map(|text| safe_text(text)).unwrap_or_default();
    if matches!(action, PolicyAction::Prepend(_)) && !is_header(&text) {
        let original = match action {
            PolicyAction::Prepend(header) => header.as_str(),
            _ => "",
        };
        return Err(EncodeError::InvalidHeader {
            text: shown(original),
        });
    }
    out.extend_from_slice(b"action=");
    out.extend_from_slice(keyword.as_bytes());
    if !text.is_empty() {
        out.push(b' ');
        out.extend_from_slice(text.as_bytes());
    }
    out.extend_from_slice(b"\n\n");
    Ok(())
}

/// Control characters to spaces, trimmed, cut to [`MAX_REPLY_TEXT`] bytes (trimmed again, so
/// a cut cannot leave a space at the end).
fn safe_text(text: &str) -> String {
    let spaced: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut text = spaced.trim_matches(' ');
    if text.len() > MAX_REPLY_TEXT {
        let mut end = MAX_REPLY_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text = text[..end].trim_end_matches(' ');
    }
    text.to_owned()
}

/// `Name:` and anything after it; the name one or more of `!` to `~` except `:` (RFC 5322
/// §2.2 field names).
fn is_header(text: &str) -> bool {
    match text.split_once(':') {
        Some((name, _)) => !name.is_empty() && name.bytes().all(|b| (b'!'..=b'~').contains(&b)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(action: PolicyAction) -> Result<String, EncodeError> {
        let mut out = Vec::new();
        encode_reply(&action, &mut out)?;
        let reply = String::from_utf8(out).unwrap();
        // Whatever the text: one line, then the empty line, and nothing else.
        assert!(reply.starts_with("action="), "{reply:?}");
        assert!(reply.ends_with("\n\n"), "{reply:?}");
        assert_eq!(reply.matches('\n').count(), 2, "{reply:?}");
        assert!(!reply.contains('\r'), "{reply:?}");
        Ok(reply)
    }

    fn invalid(text: &str) -> Result<String, EncodeError> {
        Err(EncodeError::InvalidHeader { text: text.into() })
    }

    #[test]
    fn every_action_and_hostile_text() {
        use PolicyAction::*;
        let ok = |s: &str| Result::Ok(s.to_string());
        #[rustfmt::skip]
        let cases: Vec<(PolicyAction, Result<String, EncodeError>)> = vec![
            (Ok, ok("action=OK\n\n")),
            (Dunno, ok("action=DUNNO\n\n")),
            (Reject("5.7.1 Sender blocked".into()), ok("action=REJECT 5.7.1 Sender blocked\n\n")),
            (Reject(String::new()), ok("action=REJECT\n\n")),
            (DeferIfPermit("4.7.1 Greylisted, try again later".into()),
                ok("action=DEFER_IF_PERMIT 4.7.1 Greylisted, try again later\n\n")),
            (DeferIfPermit(String::new()), ok("action=DEFER_IF_PERMIT\n\n")),
            (Hold("held by allowgate".into()), ok("action=HOLD held by allowgate\n\n")),
            (Hold(String::new()), ok("action=HOLD\n\n")),
            (Prepend("X-Allowgate: status=clean; bypass=spf,dkim; entries=12,57; tenant=acme".into()),
                ok("action=PREPEND X-Allowgate: status=clean; bypass=spf,dkim; entries=12,57; tenant=acme\n\n")),
            (Prepend("X-Empty:".into()), ok("action=PREPEND X-Empty:\n\n")),
            (Prepend("X-Tight:value".into()), ok("action=PREPEND X-Tight:value\n\n")),
            // Hostile text cannot end the reply or add a second one.
            (Reject("5.7.1 no\r\n\r\naction=OK".into()), ok("action=REJECT 5.7.1 no    action=OK\n\n")),
            (DeferIfPermit("4.7.1 x\n\naction=OK\n\n".into()), ok("action=DEFER_IF_PERMIT 4.7.1 x  action=OK\n\n")),
            (Hold("\r\n\r\naction=OK\r\n\r\n".into()), ok("action=HOLD action=OK\n\n")),
            (Prepend("X-A: v\r\n\r\naction=OK".into()), ok("action=PREPEND X-A: v    action=OK\n\n")),
            (Prepend("X-A: folded\r\n\tvalue".into()), ok("action=PREPEND X-A: folded   value\n\n")),
            (Reject("\n\n".into()), ok("action=REJECT\n\n")),
            (Reject("a\0b\u{1b}c\u{7f}d\u{85}e\u{9b}f".into()), ok("action=REJECT a b c d e f\n\n")),
            (Reject("  5.7.1 padded  ".into()), ok("action=REJECT 5.7.1 padded\n\n")),
            (Reject("5.7.1 bücher".into()), ok("action=REJECT 5.7.1 bücher\n\n")),
            // PREPEND needs `Name:` with a valid name.
            (Prepend("\r\nX-A: v".into()), ok("action=PREPEND X-A: v\n\n")),
            (Prepend("no colon".into()), invalid("no colon")),
            (Prepend(String::new()), invalid("")),
            (Prepend(": value".into()), invalid(": value")),
            (Prepend("X A: v".into()), invalid("X A: v")),
            (Prepend("X-A : v".into()), invalid("X-A : v")),
            (Prepend("Bücher: v".into()), invalid("Bücher: v")),
            (Prepend("X\u{1b}A: v".into()), invalid("X\\u{1b}A: v")),
            (Prepend("\n\naction=OK".into()), invalid("\\n\\naction=OK")),
        ];
        for (action, expected) in cases {
            assert_eq!(encoded(action.clone()), expected, "{action:?}");
        }
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        let reply = encoded(PolicyAction::Reject("x".repeat(2_000))).unwrap();
        assert_eq!(
            reply,
            format!("action=REJECT {}\n\n", "x".repeat(MAX_REPLY_TEXT))
        );
        // 'é' is two bytes: 500 of them fill the cap exactly.
        let reply = encoded(PolicyAction::Hold("é".repeat(600))).unwrap();
        assert_eq!(reply, format!("action=HOLD {}\n\n", "é".repeat(500)));
        // 'x' then 'é's: the cut falls inside a character and moves back before it.
        let reply = encoded(PolicyAction::Hold(format!("x{}", "é".repeat(600)))).unwrap();
        assert_eq!(reply, format!("action=HOLD x{}\n\n", "é".repeat(499)));
        // A cut that leaves a space at the end drops it.
        let text = format!("{} tail", "x".repeat(MAX_REPLY_TEXT - 1));
        let reply = encoded(PolicyAction::Reject(text)).unwrap();
        assert_eq!(
            reply,
            format!("action=REJECT {}\n\n", "x".repeat(MAX_REPLY_TEXT - 1))
        );
        // A long header stays a header.
        let header = format!("X-Long: {}", "v".repeat(2_000));
        let reply = encoded(PolicyAction::Prepend(header)).unwrap();
        assert_eq!(reply.len(), "action=PREPEND ".len() + MAX_REPLY_TEXT + 2);
    }

    #[test]
    fn appends_and_writes_nothing_on_error() {
        let mut out = b"before".to_vec();
        encode_reply(&PolicyAction::Dunno, &mut out).unwrap();
        assert_eq!(out, b"beforeaction=DUNNO\n\n");
        let error = encode_reply(&PolicyAction::Prepend("bad".into()), &mut out).unwrap_err();
        assert_eq!(out, b"beforeaction=DUNNO\n\n");
        assert_eq!(
            error.to_string(),
            "PREPEND needs a header `Name: value` with a valid header name, not `bad`"
        );
    }
}
