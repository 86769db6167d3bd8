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
/// Only a [`Decoder`] (or [`PolicyRequest::parse`]) makes one, so a request has at least one
/// attribute, every name is non-empty and holds no `=` or newline, and no value holds a
/// newline.
#[derive(Clone)]
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

    /// A request without attributes, to fill (never handed out empty: a request has at least
    /// one attribute).
    pub(crate) const fn empty() -> PolicyRequest {
        PolicyRequest {
            text: String::new(),
            spans: Vec::new(),
        }
    }

    /// An empty request with room for one like `like` (the next request on a connection is
    /// usually the same size: no reallocation while it arrives).
    pub(crate) fn with_room_of(like: &PolicyRequest) -> PolicyRequest {
        PolicyRequest {
            text: String::with_capacity(like.text.len()),
            spans: Vec::with_capacity(like.spans.len()),
        }
    }

    /// Add one attribute: a new name goes last, a repeated one gets the new value in place.
    pub(crate) fn insert(&mut self, name: &str, value: &str) {
        // Names are short and mostly differ in length: compare lengths first.
        let existing = self.spans.iter().position(|span| {
            span.name.len() == name.len() && &self.text[span.name.clone()] == name
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> PolicyRequest {
        PolicyRequest::parse(text.as_bytes(), &Limits::default()).unwrap()
    }

    #[test]
    fn protocol_states() {
        #[rustfmt::skip]
        let cases: &[(&str, Option<ProtocolState>)] = &[
            ("protocol_state=CONNECT\n\n", Some(ProtocolState::Connect)),
            ("protocol_state=EHLO\n\n", Some(ProtocolState::Ehlo)),
            ("protocol_state=HELO\n\n", Some(ProtocolState::Helo)),
            ("protocol_state=MAIL\n\n", Some(ProtocolState::Mail)),
            ("protocol_state=RCPT\n\n", Some(ProtocolState::Rcpt)),
            ("protocol_state=DATA\n\n", Some(ProtocolState::Data)),
            ("protocol_state=END-OF-MESSAGE\n\n", Some(ProtocolState::EndOfMessage)),
            ("protocol_state=VRFY\n\n", Some(ProtocolState::Vrfy)),
            ("protocol_state=ETRN\n\n", Some(ProtocolState::Etrn)),
            ("protocol_state=rcpt\n\n", Some(ProtocolState::Other)),
            ("protocol_state=RCPT \n\n", Some(ProtocolState::Other)),
            ("protocol_state=\n\n", Some(ProtocolState::Other)),
            ("request=smtpd_access_policy\n\n", None),
        ];
        for (input, expected) in cases {
            assert_eq!(request(input).protocol_state(), *expected, "{input:?}");
        }
    }

    #[test]
    fn numbers() {
        #[rustfmt::skip]
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("12345", Some(12345)),
            ("007", Some(7)),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("", None),
            ("+5", None),
            ("-5", None),
            (" 5", None),
            ("5 ", None),
            ("1e3", None),
            ("١٢", None),
        ];
        for (value, expected) in cases {
            let r = request(&format!("size={value}\nrecipient_count={value}\n\n"));
            assert_eq!(r.size(), *expected, "size={value:?}");
            assert_eq!(r.recipient_count(), *expected, "recipient_count={value:?}");
        }
        assert_eq!(request("a=1\n\n").size(), None);
    }

    #[test]
    fn parse_takes_exactly_one_request() {
        let limits = Limits::default();
        type Expected<'a> = Result<&'a [(&'a str, &'a str)], ProtocolError>;
        #[rustfmt::skip]
        let cases: &[(&[u8], Expected<'_>)] = &[
            (b"a=1\nb=\n\n", Ok(&[("a", "1"), ("b", "")])),
            (b"a=1\r\n\r\n", Ok(&[("a", "1")])),
            (b"", Err(ProtocolError::Incomplete { bytes: 0 })),
            (b"a=1\n", Err(ProtocolError::Incomplete { bytes: 4 })),
            (b"a=1", Err(ProtocolError::Incomplete { bytes: 3 })),
            (b"a=1\n\nb=2\n\n", Err(ProtocolError::TrailingBytes { bytes: 5 })),
            (b"a=1\n\nbad", Err(ProtocolError::TrailingBytes { bytes: 3 })),
            (b"a=1\n\n\n", Err(ProtocolError::TrailingBytes { bytes: 1 })),
            (b"\n", Err(ProtocolError::EmptyRequest)),
            (b"\na=1\n\n", Err(ProtocolError::EmptyRequest)),
            (b"bad\n", Err(ProtocolError::NotNameValue { line: 1, text: "bad".into() })),
            (b"a=1\nbad\n\n", Err(ProtocolError::NotNameValue { line: 2, text: "bad".into() })),
            (b"=1\n\n", Err(ProtocolError::EmptyName { line: 1, text: "=1".into() })),
            (b"a=\xff\n\n", Err(ProtocolError::NotUtf8 { line: 1, text: "a=\u{fffd}".into() })),
        ];
        for (input, expected) in cases {
            let parsed = PolicyRequest::parse(input, &limits);
            let parsed = parsed.as_ref().map(|r| r.attributes().collect::<Vec<_>>());
            let expected = expected.as_ref().map(|attributes| attributes.to_vec());
            assert_eq!(parsed, expected, "{input:?}");
        }
        let small = Limits {
            max_request_bytes: 4,
            max_attributes: 1,
        };
        assert_eq!(
            PolicyRequest::parse(b"a=12\n\n", &small),
            Err(ProtocolError::RequestTooLarge { bytes: 5 })
        );
        assert_eq!(
            PolicyRequest::parse(b"a=12", &small),
            Err(ProtocolError::Incomplete { bytes: 4 })
        );
        assert_eq!(
            PolicyRequest::parse(b"a\nb\n", &small),
            Err(ProtocolError::NotNameValue {
                line: 1,
                text: "a".into()
            })
        );
        assert_eq!(
            PolicyRequest::parse(
                b"a=\nb=\n\n",
                &Limits {
                    max_attributes: 1,
                    ..limits
                }
            ),
            Err(ProtocolError::TooManyAttributes { count: 2 })
        );
    }

    #[test]
    fn equality_and_debug_see_attributes_only() {
        let repeated = request("a=0\nb=2\na=1\n\n");
        let plain = request("a=1\nb=2\n\n");
        assert_eq!(repeated, plain);
        assert_ne!(plain, request("b=2\na=1\n\n"), "order matters");
        assert_ne!(plain, request("a=1\nb=3\n\n"));
        assert_eq!(format!("{repeated:?}"), r#"{"a": "1", "b": "2"}"#);
        assert_eq!(repeated.get("a"), Some("1"));
        assert_eq!(repeated.get("A"), None, "names are case-sensitive");
        assert_eq!(repeated.get("c"), None);
        assert_eq!(PolicyRequest::empty().attributes().count(), 0);
    }

    #[test]
    fn error_messages_name_the_input() {
        let cases: &[(ProtocolError, &str)] = &[
            (
                ProtocolError::NotNameValue {
                    line: 3,
                    text: "hello\\r".into(),
                },
                "line 3 of the policy request is not `name=value`: `hello\\r`",
            ),
            (
                ProtocolError::RequestTooLarge { bytes: 65_537 },
                "policy request reached 65537 bytes without ending (more than the cap allows)",
            ),
            (
                ProtocolError::TooManyAttributes { count: 257 },
                "policy request has 257 attribute lines (more than the cap allows)",
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), *message);
        }
    }
}
