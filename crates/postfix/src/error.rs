//! Errors of the codec: a request that must not be answered, a reply that cannot be sent.
//!
//! Every message that quotes input prints it escaped (see [`shown`]), so that a line holding ESC,
//! CR or a newline cannot rewrite a terminal line or forge a log line.

use std::fmt::Write as _;

/// How many characters of an offending line an error quotes.
const QUOTED_CHARS: usize = 80;

/// Why a request was refused. After one of these the connection must be closed without an
/// answer (Postfix then applies its `default_action`); a [`Decoder`](crate::Decoder) keeps
/// returning the same error.
///
/// Line numbers count the lines of the offending request, from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The request went past [`Limits::max_request_bytes`](crate::Limits) before it ended.
    /// It is refused on the byte that passes the cap, so `bytes` is always the cap plus one,
    /// however the input was split into reads.
    #[error("policy request reached {bytes} bytes without ending (more than the cap allows)")]
    RequestTooLarge {
        /// How many bytes of the request (newlines and CRs included) had arrived when it was
        /// refused: the cap plus one.
        bytes: usize,
    },
    /// The request has more attribute lines than [`Limits::max_attributes`](crate::Limits). It
    /// is refused when the first line over the cap ends, so `count` is always the cap plus one.
    #[error("policy request has {count} attribute lines (more than the cap allows)")]
    TooManyAttributes {
        /// How many attribute lines had arrived when it was refused: the cap plus one.
        count: usize,
    },
    /// A line that is not `name=value` (it has no `=`).
    #[error("line {line} of the policy request is not `name=value`: `{text}`")]
    NotNameValue {
        /// The line's number in its request, from 1.
        line: usize,
        /// The line, printable (control characters escaped) and cut to 80 characters.
        text: String,
    },
    /// A line `=value`: the attribute has no name.
    #[error("line {line} of the policy request has an empty attribute name: `{text}`")]
    EmptyName {
        /// The line's number in its request, from 1.
        line: usize,
        /// The line, printable (control characters escaped) and cut to 80 characters.
        text: String,
    },
    /// A line that is not UTF-8.
    #[error("line {line} of the policy request is not UTF-8: `{text}`")]
    NotUtf8 {
        /// The line's number in its request, from 1.
        line: usize,
        /// The line, decoded lossily (U+FFFD for each invalid sequence), printable and cut to
        /// 80 characters.
        text: String,
    },
    /// An empty line where a request should start: a request needs at least one attribute.
    /// Postfix never sends one; a stray empty line between requests is refused like any other
    /// line that is not `name=value`.
    #[error("empty line where a policy request should start (a request needs an attribute)")]
    EmptyRequest,
    /// Only from [`PolicyRequest::parse`](crate::PolicyRequest::parse): the bytes end before
    /// the empty line that ends a request.
    #[error("policy request is incomplete: {bytes} bytes without the empty line that ends it")]
    Incomplete {
        /// How many bytes of the unfinished request there are.
        bytes: usize,
    },
    /// Only from [`PolicyRequest::parse`](crate::PolicyRequest::parse): bytes follow the empty
    /// line that ends the request.
    #[error("{bytes} bytes follow the end of the policy request")]
    TrailingBytes {
        /// How many bytes follow the request.
        bytes: usize,
    },
}

/// Why a reply could not be encoded. Nothing is written when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A `PREPEND` text that is not a header `Name: value` with a valid name (one or more
    /// printable ASCII characters other than space and `:`, followed directly by `:`).
    #[error("PREPEND needs a header `Name: value` with a valid header name, not `{text}`")]
    InvalidHeader {
        /// The text, printable (control characters escaped) and cut to 80 characters.
        text: String,
    },
}

/// `text` made printable and cut to 80 characters (an ellipsis marking the cut): control
/// characters (C0, DEL, C1) and the invisible bidirectional overrides are escaped
/// (`\r`, `\n`, `\u{1b}`), everything else is kept.
pub(crate) fn shown(text: &str) -> String {
    let mut out = String::new();
    let mut chars = 0;
    for c in text.chars() {
        let needs_escape =
            c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        let before = out.len();
        if needs_escape {
            // Writing to a String cannot fail.
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
        chars += out[before..].chars().count();
        if chars > QUOTED_CHARS {
            // Cut back to QUOTED_CHARS - 1 characters and mark the cut.
            let keep = out
                .char_indices()
                .nth(QUOTED_CHARS - 1)
                .map_or(out.len(), |(i, _)| i);
            out.truncate(keep);
            out.push('…');
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_escapes_and_cuts() {
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("a\rb\nc", "a\\rb\\nc"),
            ("\u{1b}[2J", "\\u{1b}[2J"),
            ("\u{202e}moc.evil", "\\u{202e}moc.evil"),
            ("bücher", "bücher"),
        ];
        for (input, expected) in cases {
            assert_eq!(shown(input), *expected, "{input:?}");
        }
        let long = "x".repeat(200);
        assert_eq!(shown(&long), format!("{}…", "x".repeat(79)));
        assert_eq!(shown(&"x".repeat(80)), "x".repeat(80));
        assert_eq!(shown(&"x".repeat(81)), format!("{}…", "x".repeat(79)));
        // A cut never splits an escape's text in a way that panics, and stays at 80 chars.
        let escapes = "\u{1}".repeat(100);
        assert_eq!(shown(&escapes).chars().count(), 80);
    }
}
