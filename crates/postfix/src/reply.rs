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
