//! Commands from the MTA: their types, how one packet's contents parse into one, and how one is
//! written (for tests and tools that play the MTA).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::EncodeError;
use crate::error::ProtocolError;
use crate::flags::{
    SMFIA_INET, SMFIA_INET6, SMFIA_UNIX, SMFIA_UNKNOWN, SMFIC_ABORT, SMFIC_BODY, SMFIC_BODYEOB,
    SMFIC_CONNECT, SMFIC_DATA, SMFIC_EOH, SMFIC_HEADER, SMFIC_HELO, SMFIC_MACRO, SMFIC_MAIL,
    SMFIC_OPTNEG, SMFIC_QUIT, SMFIC_QUIT_NC, SMFIC_RCPT, SMFIC_UNKNOWN,
};
use crate::wire::{Fields, Packet};

/// The option negotiation: the MTA's offer ([`Command::OptNeg`]) and the filter's answer
/// ([`Response::OptNeg`](crate::Response::OptNeg)). Three 32-bit big-endian numbers on the wire.
///
/// See [`negotiate`](crate::negotiate) for the answer this crate gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OptNeg {
    /// The protocol version (Postfix 3.7 sends 6).
    pub version: u32,
    /// `SMFIF_*` bits ([`flags`](crate::flags)): offered by the MTA, needed by the filter.
    pub actions: u32,
    /// `SMFIP_*` bits ([`flags`](crate::flags)): understood by the MTA, wanted by the filter.
    pub protocol: u32,
}

/// The address family of a [`Connect`] (`SMFIA_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `'4'`: IPv4; a port and an address follow.
    Inet,
    /// `'6'`: IPv6; a port and an address follow.
    Inet6,
    /// `'L'`: a local socket; a port (0 from Postfix) and the socket's name follow.
    Unix,
    /// `'U'`: unknown; nothing follows (port 0, empty address once decoded).
    Unknown,
}

impl Family {
    /// The family of a wire byte: `'4'`, `'6'`, `'L'` or `'U'`; `None` for anything else.
    pub fn from_byte(byte: u8) -> Option<Family> {
        match byte {
            SMFIA_INET => Some(Family::Inet),
            SMFIA_INET6 => Some(Family::Inet6),
            SMFIA_UNIX => Some(Family::Unix),
            SMFIA_UNKNOWN => Some(Family::Unknown),
            _ => None,
        }
    }

    /// The wire byte.
    pub fn as_byte(self) -> u8 {
        match self {
            Family::Inet => SMFIA_INET,
            Family::Inet6 => SMFIA_INET6,
            Family::Unix => SMFIA_UNIX,
            Family::Unknown => SMFIA_UNKNOWN,
        }
    }
}

/// The SMTP client, as [`Command::Connect`] describes it.
///
/// From Postfix: `hostname` is the client's verified name, or the address in brackets
/// (`[203.0.113.9]`) when it has none; `address` is the address as text (`203.0.113.9`,
/// `2001:db8::1`); `port` the client's port. With XCLIENT these are the values XCLIENT set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Connect {
    /// The client's host name, or its address in brackets when it has no (verified) name.
    pub hostname: String,
    /// The address family.
    pub family: Family,
    /// The client's port (0 for [`Family::Unix`] and [`Family::Unknown`]).
    pub port: u16,
    /// The client's address as text (empty for [`Family::Unknown`]).
    pub address: String,
}

impl Connect {
    /// The client's IP address, for [`Family::Inet`] and [`Family::Inet6`] when `address`
    /// parses as one of that family. Sendmail's `IPv6:` prefix is accepted (Postfix sends the
    /// bare address); an IPv4-mapped IPv6 address is returned as the IPv4 address.
    ///
    /// ```
    /// use allowgate_milter::{Connect, Family};
    /// let connect = Connect {
    ///     hostname: "[2001:db8::7]".into(),
    ///     family: Family::Inet6,
    ///     port: 4711,
    ///     address: "IPv6:2001:db8::7".into(),
    /// };
    /// assert_eq!(connect.ip(), Some("2001:db8::7".parse().unwrap()));
    /// assert_eq!(connect.host_name(), None);
    /// ```
    pub fn ip(&self) -> Option<IpAddr> {
        match self.family {
            Family::Inet => self.address.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
            Family::Inet6 => {
                let text = self.address.as_str();
                let text = match text.get(..5) {
                    Some(prefix) if prefix.eq_ignore_ascii_case("IPv6:") => &text[5..],
                    _ => text,
                };
                let ip = text.parse::<Ipv6Addr>().ok()?;
                Some(match ip.to_ipv4_mapped() {
                    Some(v4) => IpAddr::V4(v4),
                    None => IpAddr::V6(ip),
                })
            }
            Family::Unix | Family::Unknown => None,
        }
    }

    /// The client's host name, when the MTA knows one: `None` when `hostname` is empty, is an
    /// address in brackets (Postfix's and sendmail's "no name") or is `unknown`.
    pub fn host_name(&self) -> Option<&str> {
        let name = self.hostname.as_str();
        let bracketed = name.starts_with('[') && name.ends_with(']');
        if name.is_empty() || bracketed || name == "unknown" {
            None
        } else {
            Some(name)
        }
    }
}

/// One command from the MTA.
///
/// Strings are decoded from UTF-8 lossily (each invalid sequence becomes U+FFFD); decoding never
/// fails on content, only on structure. Body chunks keep their raw bytes.
///
/// Which commands want an answer: see [`Command::needs_response`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Command {
    /// `O`: the option negotiation, the first command on every connection. Answer with
    /// [`Response::OptNeg`](crate::Response::OptNeg) (see [`negotiate`](crate::negotiate)).
    OptNeg(OptNeg),
    /// `D`: macros (sendmail's "symbols") for the command that follows; `stage` is that
    /// command's code (`b'C'`, `b'H'`, `b'M'`, `b'R'`, `b'T'`, `b'L'`, `b'N'`, `b'B'`, `b'E'`).
    /// Names are as the MTA sends them: one letter bare (`i`, `j`), longer ones in braces
    /// (`{daemon_name}`); see [`macro_value`](crate::macro_value). No answer.
    Macros {
        /// The code of the command these macros belong to.
        stage: u8,
        /// Name and value pairs, in the MTA's order (possibly none).
        pairs: Vec<(String, String)>,
    },
    /// `C`: a client connected.
    Connect(Connect),
    /// `H`: the `HELO`/`EHLO` name.
    Helo(String),
    /// `M`: `MAIL FROM`: the sender in angle brackets (`<alice@sender.test>`, `<>` for the null
    /// sender; see [`envelope_address`]), then its ESMTP parameters (`SIZE=123`), one string
    /// each. Never empty.
    Mail(Vec<String>),
    /// `R`: `RCPT TO`: the recipient in angle brackets, then its ESMTP parameters. Never empty.
    Rcpt(Vec<String>),
    /// `T`: the `DATA` command.
    Data,
    /// `L`: one header of the message. Postfix does not send its own `Received:` header (the
    /// first one), and removes one space after the colon (unless
    /// [`SMFIP_HDR_LEADSPC`](crate::flags::SMFIP_HDR_LEADSPC) was negotiated). A folded value
    /// keeps its line breaks as `\n` followed by the continuation's white space.
    Header {
        /// The header's name, as in the message.
        name: String,
        /// The header's value.
        value: String,
    },
    /// `N`: the end of the headers.
    EndOfHeaders,
    /// `B`: a chunk of the body, as on the wire (CRLF line ends), at most
    /// [`MILTER_CHUNK_SIZE`](crate::flags::MILTER_CHUNK_SIZE) bytes from Postfix.
    Body(Vec<u8>),
    /// `E`: the end of the message: the last chance to add, change or delete headers, quarantine,
    /// and decide.
    EndOfBody,
    /// `A`: the current message is abandoned (`RSET`, a rejected transaction, …); the
    /// connection goes on with a new `MAIL`. No answer.
    Abort,
    /// `Q`: the connection ends. No answer; close.
    Quit,
    /// `K`: the client session ended and a new one follows on this same connection (starting
    /// with [`Command::Connect`], without a new negotiation). No answer. Postfix never sends
    /// it (it opens a new connection per SMTP session).
    QuitNewConnection,
    /// `U`: an SMTP command the MTA did not recognise, as the client sent it.
    Unknown(String),
}

impl Command {
    /// The command's code on the wire (`b'O'`, `b'D'`, …).
    pub fn code(&self) -> u8 {
        match self {
            Command::OptNeg(_) => SMFIC_OPTNEG,
            Command::Macros { .. } => SMFIC_MACRO,
            Command::Connect(_) => SMFIC_CONNECT,
            Command::Helo(_) => SMFIC_HELO,
            Command::Mail(_) => SMFIC_MAIL,
            Command::Rcpt(_) => SMFIC_RCPT,
            Command::Data => SMFIC_DATA,
            Command::Header { .. } => SMFIC_HEADER,
            Command::EndOfHeaders => SMFIC_EOH,
            Command::Body(_) => SMFIC_BODY,
            Command::EndOfBody => SMFIC_BODYEOB,
            Command::Abort => SMFIC_ABORT,
            Command::Quit => SMFIC_QUIT,
            Command::QuitNewConnection => SMFIC_QUIT_NC,
            Command::Unknown(_) => SMFIC_UNKNOWN,
        }
    }

    /// Whether the MTA waits for an answer to this command when no `SMFIP_NR_*` bit was agreed
    /// ([`needs_reply`](crate::needs_reply) takes the agreed bits into account): every command but
    /// [`Macros`](Command::Macros), [`Abort`](Command::Abort), [`Quit`](Command::Quit) and
    /// [`QuitNewConnection`](Command::QuitNewConnection). The answer is one final response
    /// ([`Response::is_final`](crate::Response::is_final)), at [`EndOfBody`](Command::EndOfBody)
    /// preceded by any modifications; [`OptNeg`](Command::OptNeg) is answered with
    /// [`Response::OptNeg`](crate::Response::OptNeg).
    pub fn needs_response(&self) -> bool {
        !matches!(
            self,
            Command::Macros { .. } | Command::Abort | Command::Quit | Command::QuitNewConnection
        )
    }

    /// The command in one packet: its code and data (the bytes after the length field and the
    /// code). Used by [`Decoder`](crate::Decoder); public for callers that frame packets
    /// themselves.
    ///
    /// Every string must end with a NUL byte and nothing may follow the last field; see
    /// [`ProtocolError`] for what is refused.
    pub fn parse(code: u8, data: &[u8]) -> Result<Command, ProtocolError> {
        let mut fields = Fields::new(code, data);
        let command = match code {
            SMFIC_OPTNEG => Command::OptNeg(OptNeg {
                version: fields.u32("version")?,
                actions: fields.u32("actions")?,
                protocol: fields.u32("protocol")?,
            }),
            SMFIC_MACRO => {
                let stage = fields.u8("stage")?;
                let mut strings = fields.strings("macro")?.into_iter();
                let mut pairs = Vec::new();
                while let Some(name) = strings.next() {
                    let Some(value) = strings.next() else {
                        return Err(ProtocolError::MacroWithoutValue {
                            stage,
                            name: crate::error::shown(&name),
                        });
                    };
                    pairs.push((name, value));
                }
                return Ok(Command::Macros { stage, pairs });
            }
            SMFIC_CONNECT => {
                let hostname = fields.string("hostname")?;
                let family_byte = fields.u8("address family")?;
                let family =
                    Family::from_byte(family_byte).ok_or(ProtocolError::UnknownFamily {
                        family: family_byte,
                    })?;
                let (port, address) = match family {
                    Family::Unknown => (0, String::new()),
                    _ => (fields.u16("port")?, fields.string("address")?),
                };
                Command::Connect(Connect {
                    hostname,
                    family,
                    port,
                    address,
                })
            }
            SMFIC_HELO => Command::Helo(fields.string("helo name")?),
            SMFIC_MAIL | SMFIC_RCPT => {
                let args = fields.strings("argument")?;
                if args.is_empty() {
                    return Err(ProtocolError::MissingArgument { command: code });
                }
                return Ok(if code == SMFIC_MAIL {
                    Command::Mail(args)
                } else {
                    Command::Rcpt(args)
                });
            }
            SMFIC_DATA => Command::Data,
            SMFIC_HEADER => Command::Header {
                name: fields.string("header name")?,
                value: fields.string("header value")?,
            },
            SMFIC_EOH => Command::EndOfHeaders,
            SMFIC_BODY => return Ok(Command::Body(data.to_vec())),
            SMFIC_BODYEOB => Command::EndOfBody,
            SMFIC_ABORT => Command::Abort,
            SMFIC_QUIT => Command::Quit,
            SMFIC_QUIT_NC => Command::QuitNewConnection,
            SMFIC_UNKNOWN => Command::Unknown(fields.string("command")?),
            _ => return Err(ProtocolError::UnknownCommand { code }),
        };
        fields.end()?;
        Ok(command)
    }
}

/// Append the packet of `command` to `out`, as an MTA sends it. For tests and tools that play
/// the MTA (and for round trips); a filter only decodes commands.
///
/// Refused (nothing written): a string holding a NUL byte, a [`Command::Mail`] or
/// [`Command::Rcpt`] without arguments, a [`Family::Unknown`] connect with a port or address,
/// a packet over `u32::MAX` bytes. Every command the [`Decoder`](crate::Decoder) returns
/// encodes, and decodes back to itself.
///
/// ```
/// use allowgate_milter::{Command, encode_command};
/// let mut out = Vec::new();
/// encode_command(&Command::Helo("mx.example".into()), &mut out)?;
/// assert_eq!(out, b"\0\0\0\x0cHmx.example\0");
/// # Ok::<(), allowgate_milter::EncodeError>(())
/// ```
pub fn encode_command(command: &Command, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let code = command.code();
    let mut packet = Packet::start(out, code);
    match command {
        Command::OptNeg(optneg) => {
            packet.u32(optneg.version);
            packet.u32(optneg.actions);
            packet.u32(optneg.protocol);
        }
        Command::Macros { stage, pairs } => {
            packet.u8(*stage);
            for (name, value) in pairs {
                packet.string(name, "macro name")?;
                packet.string(value, "macro value")?;
            }
        }
        Command::Connect(connect) => {
            packet.string(&connect.hostname, "hostname")?;
            packet.u8(connect.family.as_byte());
            if connect.family == Family::Unknown {
                if connect.port != 0 || !connect.address.is_empty() {
                    return Err(EncodeError::AddressWithUnknownFamily);
                }
            } else {
                packet.u16(connect.port);
                packet.string(&connect.address, "address")?;
            }
        }
        Command::Helo(name) => packet.string(name, "helo name")?,
        Command::Mail(args) | Command::Rcpt(args) => {
            if args.is_empty() {
                return Err(EncodeError::MissingArgument { command: code });
            }
            for arg in args {
                packet.string(arg, "argument")?;
            }
        }
        Command::Header { name, value } => {
            packet.string(name, "header name")?;
            packet.string(value, "header value")?;
        }
        Command::Body(bytes) => packet.bytes(bytes),
        Command::Unknown(text) => packet.string(text, "command")?,
        Command::Data
        | Command::EndOfHeaders
        | Command::EndOfBody
        | Command::Abort
        | Command::Quit
        | Command::QuitNewConnection => {}
    }
    packet.finish()
}

/// The address in an envelope argument: `<alice@sender.test>` → `alice@sender.test`, `<>` →
/// `""` (the null sender). Text without both angle brackets is returned as it is.
///
/// ```
/// use allowgate_milter::envelope_address;
/// assert_eq!(envelope_address("<alice@sender.test>"), "alice@sender.test");
/// assert_eq!(envelope_address("<>"), "");
/// assert_eq!(envelope_address("bob@example.test"), "bob@example.test");
/// ```
pub fn envelope_address(argument: &str) -> &str {
    argument
        .strip_prefix('<')
        .and_then(|rest| rest.strip_suffix('>'))
        .unwrap_or(argument)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Decoder, Limits};

    fn connect(hostname: &str, family: Family, port: u16, address: &str) -> Command {
        Command::Connect(Connect {
            hostname: hostname.into(),
            family,
            port,
            address: address.into(),
        })
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The one outcome of a whole packet: through the decoder (which must then hold nothing),
    /// and through `Command::parse` directly.
    fn decode_one(bytes: &[u8]) -> Result<Command, ProtocolError> {
        let mut decoder = Decoder::new(Limits::default());
        decoder.feed(bytes);
        let first = decoder.next_command();
        if let Ok(Some(_)) = first {
            assert_eq!(decoder.next_command(), Ok(None), "{bytes:?}");
        }
        assert_eq!(decoder.buffered(), 0, "{bytes:?}");
        let direct = Command::parse(bytes[4], &bytes[5..]);
        let first = first.map(|c| c.unwrap_or_else(|| panic!("incomplete: {bytes:?}")));
        assert_eq!(first, direct, "{bytes:?}");
        direct
    }

    /// Every command, byte for byte as the milter protocol lays it out (mfdef.h, milter8.c):
    /// decoded from these bytes, and encoded to them.
    #[test]
    fn every_command_both_ways_byte_exact() {
        #[rustfmt::skip]
        let cases: Vec<(&str, &[u8], Command)> = vec![
            ("option negotiation, Postfix 3.7's offer",
                b"\0\0\0\x0dO\0\0\0\x06\0\0\x01\xff\0\x1f\xff\xff",
                Command::OptNeg(OptNeg { version: 6, actions: 0x1ff, protocol: 0x1f_ffff })),
            ("macros, none", b"\0\0\0\x02DH",
                Command::Macros { stage: b'H', pairs: vec![] }),
            ("macros for connect",
                b"\0\0\0\x2cDCj\0gw.example.test\0{daemon_addr}\x00127.0.0.1\0",
                Command::Macros { stage: b'C', pairs: pairs(&[("j", "gw.example.test"), ("{daemon_addr}", "127.0.0.1")]) }),
            ("macros, the queue id", b"\0\0\0\x10DEi\x004F1B29B61BF\0",
                Command::Macros { stage: b'E', pairs: pairs(&[("i", "4F1B29B61BF")]) }),
            ("macros with an empty value", b"\0\0\0\x05DTx\0\0",
                Command::Macros { stage: b'T', pairs: pairs(&[("x", "")]) }),
            ("connect, IPv4", b"\0\0\0\x1eC[203.0.113.9]\x004\x12\x67203.0.113.9\0",
                connect("[203.0.113.9]", Family::Inet, 4711, "203.0.113.9")),
            ("connect, IPv6", b"\0\0\0\x1bCmx.example\x006\0\x192001:db8::1\0",
                connect("mx.example", Family::Inet6, 25, "2001:db8::1")),
            ("connect, local socket", b"\0\0\0\x19Clocalhost\0L\0\0/run/smtpd\0",
                connect("localhost", Family::Unix, 0, "/run/smtpd")),
            ("connect, unknown family: no port, no address", b"\0\0\0\x0aCunknown\0U",
                connect("unknown", Family::Unknown, 0, "")),
            ("helo", b"\0\0\0\x10Hmx.sender.test\0", Command::Helo("mx.sender.test".into())),
            ("helo, empty", b"\0\0\0\x02H\0", Command::Helo(String::new())),
            ("mail with ESMTP parameters",
                b"\0\0\0\x2cM<alice@sender.test>\0SIZE=123\0BODY=8BITMIME\0",
                Command::Mail(strings(&["<alice@sender.test>", "SIZE=123", "BODY=8BITMIME"]))),
            ("mail, the null sender", b"\0\0\0\x04M<>\0", Command::Mail(strings(&["<>"]))),
            ("rcpt", b"\0\0\0\x14R<bob@example.test>\0",
                Command::Rcpt(strings(&["<bob@example.test>"]))),
            ("data", b"\0\0\0\x01T", Command::Data),
            ("header", b"\0\0\0\x12LSubject\0hi there\0",
                Command::Header { name: "Subject".into(), value: "hi there".into() }),
            ("header, empty value", b"\0\0\0\x0aLX-Empty\0\0",
                Command::Header { name: "X-Empty".into(), value: String::new() }),
            ("header, folded", b"\0\0\0\x18LX-Folded\0first\n\tsecond\0",
                Command::Header { name: "X-Folded".into(), value: "first\n\tsecond".into() }),
            ("end of headers", b"\0\0\0\x01N", Command::EndOfHeaders),
            ("body", b"\0\0\0\x08Bhello\r\n", Command::Body(b"hello\r\n".to_vec())),
            ("body: raw bytes, NUL and invalid UTF-8 kept", b"\0\0\0\x05Ba\0\xffb",
                Command::Body(b"a\0\xffb".to_vec())),
            ("body, empty", b"\0\0\0\x01B", Command::Body(vec![])),
            ("end of body", b"\0\0\0\x01E", Command::EndOfBody),
            ("abort", b"\0\0\0\x01A", Command::Abort),
            ("quit", b"\0\0\0\x01Q", Command::Quit),
            ("quit, new connection", b"\0\0\0\x01K", Command::QuitNewConnection),
            ("unknown SMTP command", b"\0\0\0\x09UHELP me\0", Command::Unknown("HELP me".into())),
            ("UTF-8 text", "\0\0\0\x0cHbücher.de\0".as_bytes(), Command::Helo("bücher.de".into())),
        ];
        for (name, bytes, command) in cases {
            assert_eq!(decode_one(bytes), Ok(command.clone()), "{name}: decode");
            let mut out = b"before".to_vec();
            assert_eq!(encode_command(&command, &mut out), Ok(()), "{name}");
            assert_eq!(&out[..6], b"before", "{name}: appended");
            assert_eq!(&out[6..], bytes, "{name}: encode");
        }
    }

    #[test]
    fn strings_decode_lossily_and_never_fail_on_content() {
        #[rustfmt::skip]
        let cases: &[(&str, &[u8], Command)] = &[
            ("invalid UTF-8", b"\0\0\0\x05H\xffmx\0", Command::Helo("\u{fffd}mx".into())),
            ("a cut sequence", b"\0\0\0\x03H\xc3\0", Command::Helo("\u{fffd}".into())),
            ("control characters stay", b"\0\0\0\x08LX\0a\r\nb\0",
                Command::Header { name: "X".into(), value: "a\r\nb".into() }),
            ("every byte but NUL", b"\0\0\0\x05M\x01\x7f\x80\0",
                Command::Mail(strings(&["\u{1}\u{7f}\u{fffd}"]))),
        ];
        for (name, bytes, command) in cases {
            let decoded = decode_one(bytes);
            assert_eq!(decoded.as_ref(), Ok(command), "{name}");
            // A lossy decoding re-encodes (as U+FFFD) and decodes to itself.
            let mut out = Vec::new();
            encode_command(command, &mut out).unwrap();
            assert_eq!(decode_one(&out).as_ref(), Ok(command), "{name}: again");
        }
    }

    #[test]
    fn malformed_commands_are_refused() {
        use ProtocolError as E;
        let truncated = |command, field| E::Truncated { command, field };
        let unterminated = |command, field| E::Unterminated { command, field };
        let trailing = |command, bytes| E::TrailingData { command, bytes };
        #[rustfmt::skip]
        let cases: &[(&str, &[u8], ProtocolError)] = &[
            ("an unknown code", b"\0\0\0\x01Z", E::UnknownCommand { code: b'Z' }),
            ("a response code", b"\0\0\0\x01c", E::UnknownCommand { code: b'c' }),
            ("a control byte", b"\0\0\0\x01\x00", E::UnknownCommand { code: 0 }),
            ("option negotiation cut short", b"\0\0\0\x05O\0\0\0\x06",
                truncated(b'O', "actions")),
            ("option negotiation with a byte more", b"\0\0\0\x0eO\0\0\0\x06\0\0\x01\xff\0\x1f\xff\xff\0",
                trailing(b'O', 1)),
            ("macros without a stage", b"\0\0\0\x01D", truncated(b'D', "stage")),
            ("a macro without a value", b"\0\0\0\x04DCj\0",
                E::MacroWithoutValue { stage: b'C', name: "j".into() }),
            ("a macro value without its NUL", b"\0\0\0\x05DCj\0x", unterminated(b'D', "macro")),
            ("connect without a family", b"\0\0\0\x03Ch\0", truncated(b'C', "address family")),
            ("connect with an unknown family", b"\0\0\0\x04Ch\0X", E::UnknownFamily { family: b'X' }),
            ("connect with half a port", b"\0\0\0\x05Ch\x004\0", truncated(b'C', "port")),
            ("connect, address without its NUL", b"\0\0\0\x0cCh\x004\0\x191.2.3.4",
                unterminated(b'C', "address")),
            ("connect, hostname without its NUL", b"\0\0\0\x02Ch", unterminated(b'C', "hostname")),
            ("connect, unknown family with a port", b"\0\0\0\x06Ch\0U\0\x19", trailing(b'C', 2)),
            ("helo without its NUL", b"\0\0\0\x03Hmx", unterminated(b'H', "helo name")),
            ("helo without data", b"\0\0\0\x01H", unterminated(b'H', "helo name")),
            ("helo with two strings", b"\0\0\0\x05Ha\0b\0", trailing(b'H', 2)),
            ("mail without arguments", b"\0\0\0\x01M", E::MissingArgument { command: b'M' }),
            ("rcpt without arguments", b"\0\0\0\x01R", E::MissingArgument { command: b'R' }),
            ("rcpt, last argument without its NUL", b"\0\0\0\x08R<b>\0X=1",
                unterminated(b'R', "argument")),
            ("header without a value", b"\0\0\0\x09LSubject\0", unterminated(b'L', "header value")),
            ("header, value without its NUL", b"\0\0\0\x0bLSubject\0hi",
                unterminated(b'L', "header value")),
            ("header with a third string", b"\0\0\0\x07LA\0b\0c\0", trailing(b'L', 2)),
            ("data with data", b"\0\0\0\x02T\0", trailing(b'T', 1)),
            ("end of headers with data", b"\0\0\0\x02Nx", trailing(b'N', 1)),
            ("end of body with data", b"\0\0\0\x04Exyz", trailing(b'E', 3)),
            ("abort with data", b"\0\0\0\x02A\0", trailing(b'A', 1)),
            ("quit with data", b"\0\0\0\x02Q\0", trailing(b'Q', 1)),
            ("unknown command without its NUL", b"\0\0\0\x05UHELP", unterminated(b'U', "command")),
        ];
        for (name, bytes, error) in cases {
            assert_eq!(decode_one(bytes).as_ref(), Err(error), "{name}");
        }
    }

    #[test]
    fn commands_that_cannot_be_sent_are_refused_and_nothing_is_written() {
        #[rustfmt::skip]
        let cases: Vec<(&str, Command, EncodeError)> = vec![
            ("NUL in helo", Command::Helo("a\0b".into()),
                EncodeError::NulInString { command: b'H', field: "helo name" }),
            ("NUL in a macro name", Command::Macros { stage: b'C', pairs: pairs(&[("a", "1"), ("b\0", "2")]) },
                EncodeError::NulInString { command: b'D', field: "macro name" }),
            ("NUL in a header value", Command::Header { name: "X".into(), value: "\0".into() },
                EncodeError::NulInString { command: b'L', field: "header value" }),
            ("NUL in the last argument", Command::Rcpt(strings(&["<b@x>", "X=\0"])),
                EncodeError::NulInString { command: b'R', field: "argument" }),
            ("mail without arguments", Command::Mail(vec![]),
                EncodeError::MissingArgument { command: b'M' }),
            ("rcpt without arguments", Command::Rcpt(vec![]),
                EncodeError::MissingArgument { command: b'R' }),
            ("unknown family with a port", connect("h", Family::Unknown, 25, ""),
                EncodeError::AddressWithUnknownFamily),
            ("unknown family with an address", connect("h", Family::Unknown, 0, "1.2.3.4"),
                EncodeError::AddressWithUnknownFamily),
        ];
        for (name, command, error) in cases {
            let mut out = b"kept".to_vec();
            assert_eq!(encode_command(&command, &mut out), Err(error), "{name}");
            assert_eq!(out, b"kept", "{name}");
        }
    }

    #[test]
    fn connect_helpers() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let of = |family, address: &str| Connect {
            hostname: String::new(),
            family,
            port: 0,
            address: address.into(),
        };
        #[rustfmt::skip]
        let cases: &[(Connect, Option<IpAddr>)] = &[
            (of(Family::Inet, "203.0.113.9"), ip("203.0.113.9")),
            (of(Family::Inet, "2001:db8::1"), None),
            (of(Family::Inet, "203.0.113.9 "), None),
            (of(Family::Inet6, "2001:db8::1"), ip("2001:db8::1")),
            (of(Family::Inet6, "IPv6:2001:db8::1"), ip("2001:db8::1")),
            (of(Family::Inet6, "ipv6:2001:db8::1"), ip("2001:db8::1")),
            (of(Family::Inet6, "::ffff:192.0.2.1"), ip("192.0.2.1")),
            (of(Family::Inet6, "IPv6:"), None),
            (of(Family::Inet6, "203.0.113.9"), None),
            (of(Family::Inet6, "bücher"), None),
            (of(Family::Unix, "/run/smtpd"), None),
            (of(Family::Unix, "203.0.113.9"), None),
            (of(Family::Unknown, ""), None),
        ];
        for (connect, expected) in cases {
            assert_eq!(connect.ip(), *expected, "{connect:?}");
        }
        let named = |hostname: &str| Connect {
            hostname: hostname.into(),
            ..of(Family::Inet, "203.0.113.9")
        };
        assert_eq!(named("mx.sender.test").host_name(), Some("mx.sender.test"));
        assert_eq!(named("[203.0.113.9]").host_name(), None);
        assert_eq!(named("[IPv6:2001:db8::1]").host_name(), None);
        assert_eq!(named("unknown").host_name(), None);
        assert_eq!(named("").host_name(), None);
        for byte in 0..=u8::MAX {
            match Family::from_byte(byte) {
                Some(family) => assert_eq!(family.as_byte(), byte),
                None => assert!(!b"46LU".contains(&byte)),
            }
        }
    }

    #[test]
    fn which_commands_need_a_response() {
        let silent = [b'D', b'A', b'Q', b'K'];
        let all = [
            Command::OptNeg(OptNeg {
                version: 6,
                actions: 0,
                protocol: 0,
            }),
            Command::Macros {
                stage: b'C',
                pairs: vec![],
            },
            connect("h", Family::Unknown, 0, ""),
            Command::Helo(String::new()),
            Command::Mail(strings(&["<>"])),
            Command::Rcpt(strings(&["<b@x>"])),
            Command::Data,
            Command::Header {
                name: "A".into(),
                value: String::new(),
            },
            Command::EndOfHeaders,
            Command::Body(vec![]),
            Command::EndOfBody,
            Command::Abort,
            Command::Quit,
            Command::QuitNewConnection,
            Command::Unknown(String::new()),
        ];
        let codes: Vec<u8> = all.iter().map(Command::code).collect();
        assert_eq!(codes, b"ODCHMRTLNBEAQKU");
        for command in &all {
            assert_eq!(
                command.needs_response(),
                !silent.contains(&command.code()),
                "{command:?}"
            );
        }
    }
}
