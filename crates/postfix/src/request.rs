//! One decoded policy request: its attributes, and typed access to the ones allowgate reads.

use std::fmt;
use std::ops::Range;

use crate::{Decoder, Limits, ProtocolError};

/// One policy request: every attribute Postfix sent, in the order the names first appeared.
///
/// A name sent twice keeps the place of its first line and the value of its last ("the last
/// wins"). Names allowgate does not know are kept (see [`get`](Self::get) and
/// [`attributes`](Self::attributes)) and otherwise ignored. Values are kept as sent, neither
/// trimmed nor unescaped; an empty value (`sender=`) is `Some("")`.
///
/// Built by a [`Decoder`] (or [`PolicyRequest::parse`]), so every name is non-empty and holds
/// no `=` or newline, and no value holds a newline.
#[derive(Clone, Default)]
pub struct PolicyRequest {
    /// The names and values, back to back (a repeated name leaves its older value behind).
    text: String,
    /// One per distinct name, in order of first appearance: where its name and value are.
    spans: Vec<Span>,
}

/// Where one attribute's name and current value are in [`PolicyRequest::text`].
#[derive(Debug, Clone)]
struct Span {
    name: Range<usize>,
    value: Range<usize>,
}

/// The SMTP stage a request is made at (`protocol_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolState {
    /// `CONNECT`: the client connected (`smtpd_client_restrictions`).
    Connect,
    /// `EHLO`.
    Ehlo,
    /// `HELO`.
    Helo,
    /// `MAIL`: `MAIL FROM`.
    Mail,
    /// `RCPT`: `RCPT TO`, once per recipient.
    Rcpt,
    /// `DATA`: the `DATA` command.
    Data,
    /// `END-OF-MESSAGE`: after the message content (no `PREPEND` here).
    EndOfMessage,
    /// `VRFY`.
    Vrfy,
    /// `ETRN`.
    Etrn,
    /// Any other value (matching is exact: Postfix sends the names in upper case).
    Other,
}

impl ProtocolState {
    /// The state named by a `protocol_state` value; [`Other`](Self::Other) for any other text.
    fn from_value(value: &str) -> ProtocolState {
        match value {
            "CONNECT" => ProtocolState::Connect,
            "EHLO" => ProtocolState::Ehlo,
            "HELO" => ProtocolState::Helo,
            "MAIL" => ProtocolState::Mail,
            "RCPT" => ProtocolState::Rcpt,
            "DATA" => ProtocolState::Data,
            "END-OF-MESSAGE" => ProtocolState::EndOfMessage,
            "VRFY" => ProtocolState::Vrfy,
            "ETRN" => ProtocolState::Etrn,
            _ => ProtocolState::Other,
        }
    }
}

impl PolicyRequest {
    /// The value of attribute `name` (exact, case-sensitive match), if it was sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.spans
            .iter()
            .find(|span| &self.text[span.name.clone()] == name)
            .map(|span| &self.text[span.value.clone()])
    }

    /// Every attribute as `(name, value)`, each name once, in the order the names first
    /// appeared, with the value of the name's last line.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.spans.iter().map(|span| {
            (
                &self.text[span.name.clone()],
                &self.text[span.value.clone()],
            )
        })
    }

    /// `request`: `smtpd_access_policy` for every request Postfix's SMTP server makes.
    pub fn request(&self) -> Option<&str> {
        self.get("request")
    }

    /// `protocol_state`: the SMTP stage; `None` when absent, [`ProtocolState::Other`] when not
    /// one of the known names.
    pub fn protocol_state(&self) -> Option<ProtocolState> {
        self.get("protocol_state").map(ProtocolState::from_value)
    }

    /// `client_address`: the SMTP client's IP address, as Postfix prints it.
    pub fn client_address(&self) -> Option<&str> {
        self.get("client_address")
    }

    /// `client_name`: the client's verified host name (forward-confirmed); `unknown` when it
    /// could not be verified.
    pub fn client_name(&self) -> Option<&str> {
        self.get("client_name")
    }

    /// `reverse_client_name`: the client's host name from the reverse lookup alone (not
    /// verified); `unknown` when there is none.
    pub fn reverse_client_name(&self) -> Option<&str> {
        self.get("reverse_client_name")
    }

    /// `helo_name`: the name the client gave in `HELO`/`EHLO` (empty before it did).
    pub fn helo_name(&self) -> Option<&str> {
        self.get("helo_name")
    }

    /// `sender`: the envelope sender (`MAIL FROM`), without angle brackets; `""` for the null
    /// sender `<>`.
    pub fn sender(&self) -> Option<&str> {
        self.get("sender")
    }

    /// `recipient`: the envelope recipient of this `RCPT TO`.
    pub fn recipient(&self) -> Option<&str> {
        self.get("recipient")
    }

    /// `recipient_count`: recipients accepted so far (`0` at `RCPT`; final at `DATA` and
    /// `END-OF-MESSAGE`). `None` when absent or not a decimal number that fits in a `u64`.
    pub fn recipient_count(&self) -> Option<u64> {
        self.get("recipient_count").and_then(decimal)
    }

    /// `queue_id`: the Postfix queue id, empty before Postfix assigned one.
    pub fn queue_id(&self) -> Option<&str> {
        self.get("queue_id")
    }

    /// `instance`: the same for every request about one message (for per-message state).
    pub fn instance(&self) -> Option<&str> {
        self.get("instance")
    }

    /// `size`: the message size the client announced (`MAIL FROM … SIZE=`) or, at
    /// `END-OF-MESSAGE`, the real size; `0` when unknown. `None` when absent or not a decimal
    /// number that fits in a `u64`.
    pub fn size(&self) -> Option<u64> {
        self.get("size").and_then(decimal)
    }

    /// `sasl_username`: the SASL login name, empty when the client did not authenticate.
    pub fn sasl_username(&self) -> Option<&str> {
        self.get("sasl_username")
    }

    /// Decode exactly one whole request: `name=value` lines and the empty line that ends the
    /// request, nothing before or after it. For tests and tools; a server reads a connection
    /// with a [`Decoder`].
    ///
    /// Errors: those of [`Decoder`] (with the same `limits`), plus
    /// [`ProtocolError::Incomplete`] when the empty line is missing and
    /// [`ProtocolError::TrailingBytes`] when anything follows it.
    pub fn parse(bytes: &[u8], limits: &Limits) -> Result<PolicyRequest, ProtocolError> {
        let mut decoder = Decoder::new(*limits);
        // One request at a time, so that bytes after it are reported as trailing even when
        // they would be a second request or an error of their own.
        let end = match request_end(bytes) {
            Some(end) => end,
            None => {
                decoder.feed(bytes);
                decoder.next_request()?;
                return Err(ProtocolError::Incomplete {
                    bytes: decoder.buffered(),
                });
            }
        };
        decoder.feed(&bytes[..end]);
        match decoder.next_request()? {
            Some(request) if end == bytes.len() => Ok(request),
            Some(_) => Err(ProtocolError::TrailingBytes {
                bytes: bytes.len() - end,
            }),
            // `request_end` found the end of a request, so the decoder returns it or an error.
            None => Err(ProtocolError::Incomplete { bytes: end }),
        }
    }

    /// Add one attribute: a new name goes last, a repeated one gets the new value in place.
    pub(crate) fn insert(&mut self, name: &str, value: &str) {
        let existing = self
            .spans
            .iter()
            .position(|span| &self.text[span.name.clone()] == name);
        let start = self.text.len();
        match existing {
            Some(i) => {
                self.text.push_str(value);
                self.spans[i].value = start..self.text.len();
            }
            None => {
                self.text.push_str(name);
                let name_end = self.text.len();
                self.text.push_str(value);
                self.spans.push(Span {
                    name: start..name_end,
                    value: name_end..self.text.len(),
                });
            }
        }
    }
}

/// Where the first request in `bytes` ends (just after the `\n` of its empty line), if it does.
fn request_end(bytes: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            let line = &bytes[line_start..i];
            if line.is_empty() || line == b"\r" {
                return Some(i + 1);
            }
            line_start = i + 1;
        }
    }
    None
}

/// A decimal number: ASCII digits only (no sign, no spaces), fitting in a `u64`.
fn decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl PartialEq for PolicyRequest {
    fn eq(&self, other: &Self) -> bool {
        self.attributes().eq(other.attributes())
    }
}

impl Eq for PolicyRequest {}

impl fmt::Debug for PolicyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.attributes()).finish()
    }
}
