//! The milter protocol (version 6, sendmail 8.14 / Postfix ≥ 2.6), filter side, sans I/O.
//!
//! This crate owns the wire format and nothing else: bytes read from the MTA's connection go
//! into a [`Decoder`], typed [`Command`]s come out; a [`Response`] becomes bytes with
//! [`encode_response`]. No sockets, no async, no per-connection state, no policy: the server
//! crate does the I/O, keeps the state of each connection and decides. (Small pure helpers it
//! needs are here: [`negotiate`], [`macro_value`], [`Connect::ip`], [`envelope_address`].)
//!
//! # The protocol
//!
//! Every packet, both ways, is a 32-bit big-endian length (of what follows), a command or
//! response code byte, and data: 32-bit and 16-bit big-endian numbers, bytes, NUL-terminated
//! strings, or raw body bytes. The [`flags`] module has every number.
//!
//! One connection from Postfix carries one SMTP session:
//!
//! 1. `O` [`Command::OptNeg`]: the MTA offers its version, actions and protocol bits; the
//!    filter answers [`Response::OptNeg`] ([`negotiate`]: version 6, add/change headers and
//!    quarantine, every stage, a reply to every command).
//! 2. Per stage, `D` [`Command::Macros`] for it (no answer), then the command: `C` connect,
//!    `H` helo, `M` mail, `R` rcpt (once per recipient), `T` data, `L` header (once each),
//!    `N` end of headers, `B` body chunks, `E` end of body. Each is answered with one final
//!    response ([`Response::is_final`]): `c` continue, `a` accept, `r` reject, `t` tempfail,
//!    `d` discard or `y` a reply code. At `E`, header changes and quarantine (`h`, `i`, `m`,
//!    `q`) and progress (`p`) come before the final response.
//! 3. `A` [`Command::Abort`] ends a message early (no answer) and a new `M` may follow;
//!    `Q` [`Command::Quit`] ends the connection.
//!
//! # What Postfix 3.7 does (checked in `tests/postfix.rs`)
//!
//! - **Connections**: one milter connection per SMTP session, negotiated anew each time
//!   (offer: version 6, actions `0x1ff`, protocol `0x1fffff`). `XCLIENT` ends the connection of
//!   the real client (`A`, `Q`) and opens a new one whose `C` carries the XCLIENT address
//!   (hostname `[203.0.113.9]` when XCLIENT gave no name). After the message: `A`, `A`, `Q`.
//! - **Macros by default**: at `C` `j`, `{daemon_name}`, `{daemon_addr}`, `v`, `_`; at `H` none
//!   (an empty `D` packet); at `M` `{mail_addr}`, `{mail_host}`, `{mail_mailer}`; at `R` `i` (only
//!   once a recipient was accepted: not at the first `RCPT`), `{rcpt_addr}`, `{rcpt_host}`,
//!   `{rcpt_mailer}`; at `T`, every `L`, `N`, every `B` and `E`: `i`, the queue id.
//! - **Headers shown**: the message's own in order, then those Postfix adds (`Date:` when
//!   missing), without Postfix's own `Received:`; one space after the colon removed; folded
//!   values keep `\n\t`. Headers a policy server added with `PREPEND` at `RCPT` *are* shown,
//!   first — one per accepted recipient, since Postfix asks the policy server at each `RCPT`
//!   — and [`Response::ChangeHeader`] deletes them like any other.
//! - **Replies**: [`Response::ReplyCode`] text reaches the client as given (`550 5.7.1 blocked`
//!   at `RCPT` refuses that recipient only, at end of body the message); `r` gives
//!   `550 5.7.1 Command rejected`, `t` `451 4.7.1 Service unavailable - try again later`;
//!   `d` answers `250` and drops the message; `q` then `c` answers `250` and puts the message
//!   on the hold queue (logged `milter-hold: … milter triggers HOLD action`).
//!
//! # Errors
//!
//! A [`ProtocolError`] means the stream cannot be trusted any more: close the connection
//! without answering (Postfix applies its `milter_default_action`). That includes an unknown
//! command code: the MTAs send only the fifteen codes of [`Command`], so an unknown one means
//! the peer is no milter MTA or the framing was lost, and skipping it would answer commands out
//! of turn. An [`EncodeError`] refuses a response that Postfix would not take, or whose text
//! could forge a header or an SMTP reply line; nothing is written then.
//!
//! ```
//! use allowgate_milter::{
//!     Command, Decoder, Limits, OptNeg, Response, encode_response, macro_value, negotiate,
//! };
//!
//! let mut decoder = Decoder::new(Limits::default());
//! let mut out = Vec::new();
//!
//! // Postfix opens with its offer: version 6, actions 0x1ff, protocol 0x1fffff…
//! decoder.feed(b"\0\0\0\x0dO\0\0\0\x06\0\0\x01\xff\0\x1f\xff\xff");
//! let Some(Command::OptNeg(offer)) = decoder.next_command()? else { panic!() };
//! encode_response(&Response::OptNeg(negotiate(&offer)?), &mut out)?;
//! // Version 6, actions 0x31, protocol 0xf73c0: "no reply" for every stage but RCPT and the
//! // end, and no DATA, unknown-command or end-of-headers packets.
//! assert_eq!(out, b"\0\0\0\x0dO\0\0\0\x06\0\0\0\x31\0\x0f\x73\xc0");
//!
//! // …then, at the end of the message, the macros for `E` and `E` itself, here in two reads
//! // split in the middle of a packet.
//! decoder.feed(b"\0\0\0\x10DEi\x004F1B2");
//! assert_eq!(decoder.next_command()?, None);
//! assert_eq!(decoder.buffered(), 13);
//! decoder.feed(b"9B61BF\0\0\0\0\x01E");
//! let Some(Command::Macros { stage: b'E', pairs }) = decoder.next_command()? else { panic!() };
//! assert_eq!(macro_value(&pairs, "{i}"), Some("4F1B29B61BF"));
//! assert_eq!(decoder.next_command()?, Some(Command::EndOfBody));
//! assert_eq!(decoder.next_command()?, None);
//!
//! // The answer: one header added, then the decision.
//! out.clear();
//! let header = Response::AddHeader { name: "X-Allowgate".into(), value: "status=clean".into() };
//! encode_response(&header, &mut out)?;
//! encode_response(&Response::Continue, &mut out)?;
//! assert_eq!(out, b"\0\0\0\x1ahX-Allowgate\0status=clean\0\0\0\0\x01c");
//!
//! // A command code no MTA sends: close the connection.
//! decoder.feed(b"\0\0\0\x01Z");
//! assert!(decoder.next_command().is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod command;
mod decoder;
mod error;
pub mod flags;
mod macros;
mod negotiate;
mod response;
mod wire;

pub use command::{Command, Connect, Family, OptNeg, encode_command, envelope_address};
pub use decoder::{Decoder, Limits};
pub use error::{EncodeError, NegotiationError, ProtocolError};
pub use macros::macro_value;
pub use negotiate::{NEEDED_ACTIONS, WANTED_PROTOCOL, needs_reply, negotiate};
pub use response::{MAX_REPLY_LENGTH, Response, encode_response};
