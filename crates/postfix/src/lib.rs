//! Postfix's SMTP access policy delegation protocol (`check_policy_service`), sans I/O.
//!
//! This crate owns the wire format and nothing else: bytes read from a connection go into a
//! [`Decoder`], whole [`PolicyRequest`]s come out; a [`PolicyAction`] becomes reply bytes with
//! [`encode_reply`]. No sockets, no async, no policy: the server crate does the I/O and decides
//! the action.
//!
//! The protocol (Postfix SMTPD_POLICY_README): a request is `name=value` lines, each ending in
//! `\n`, ended by an empty line; the reply is `action=<text>` and an empty line; the
//! connection is persistent, one request after another. The decoder enforces hard caps
//! ([`Limits`]: 64 KiB and 256 attributes per request by default) and refuses lines that are
//! not `name=value`; after a [`ProtocolError`] the connection must be closed without an answer,
//! and Postfix applies its `default_action` (DESIGN §5.2).
//!
//! ```
//! use allowgate_postfix::{Decoder, Limits, PolicyAction, ProtocolState, encode_reply};
//!
//! let mut decoder = Decoder::new(Limits::default());
//! // A request may arrive in pieces…
//! decoder.feed(b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.7\n");
//! assert_eq!(decoder.next_request()?, None);
//! decoder.feed(b"sender=\nrecipient=bob@example.net\n\n");
//!
//! // …and comes out whole.
//! let Some(request) = decoder.next_request()? else {
//!     panic!("the empty line ended the request");
//! };
//! assert_eq!(request.protocol_state(), Some(ProtocolState::Rcpt));
//! assert_eq!(request.client_address(), Some("192.0.2.7"));
//! assert_eq!(request.sender(), Some("")); // the null sender
//! assert_eq!(decoder.buffered(), 0);
//!
//! // The answer.
//! let mut reply = Vec::new();
//! encode_reply(
//!     &PolicyAction::Prepend("X-Allowgate: status=clean; entries=12".into()),
//!     &mut reply,
//! )?;
//! assert_eq!(reply, b"action=PREPEND X-Allowgate: status=clean; entries=12\n\n");
//!
//! // A line that is not `name=value`: no answer, close the connection.
//! decoder.feed(b"hello\n");
//! assert!(decoder.next_request().is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod decoder;
mod error;
mod reply;
mod request;

pub use decoder::{Decoder, Limits};
pub use error::{EncodeError, ProtocolError};
pub use reply::{MAX_REPLY_TEXT, PolicyAction, encode_reply};
pub use request::{PolicyRequest, ProtocolState};
