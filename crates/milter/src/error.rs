//! Errors of the codec: a stream that must be dropped, a response or command that cannot be
//! sent, a negotiation that cannot succeed.
//!
//! Every message that quotes input prints it escaped (see [`shown`]), so that text holding ESC,
//! CR or a newline cannot rewrite a terminal line or forge a log line.

use std::fmt::Write as _;

use crate::flags;

/// How many characters of offending text an error quotes.
const QUOTED_CHARS: usize = 80;

/// Why the MTA's stream was refused. After one of these the connection must be closed: the
/// framing can no longer be trusted. Postfix then applies its `milter_default_action` to the
/// SMTP session. A [`Decoder`](crate::Decoder) keeps returning the same error.
///
/// Command codes are printed as the character and the command's name, e.g. `` `L` (header)``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A packet whose length field is 0: a packet holds at least its command byte.
    #[error("milter packet of length 0 (a packet holds at least its command byte)")]
    EmptyPacket,
    /// A packet whose length field is over [`Limits::max_packet`](crate::Limits). Refused as
    /// soon as the four length bytes have arrived.
    #[error("milter packet of {length} bytes announced, more than the cap of {max}")]
    PacketTooLarge {
        /// The length the packet announced (command byte and data).
        length: u32,
        /// The cap.
        max: usize,
    },
    /// A command code this codec does not know. The MTAs send only the fifteen codes of
    /// [`Command`](crate::Command); anything else means the peer speaks something else or the
    /// stream lost its framing, so the connection is closed rather than the packet skipped.
    #[error("unknown milter command {}", shown_byte(*.code))]
    UnknownCommand {
        /// The command byte.
        code: u8,
    },
    /// The data ends inside a fixed-size field (the option negotiation's three numbers, a
    /// macro stage, an address family or port).
    #[error("milter command {} is too short for its {field}", command_label(*.command))]
    Truncated {
        /// The command byte.
        command: u8,
        /// The field that is cut, e.g. `"port"`.
        field: &'static str,
    },
    /// A string field that does not end with its NUL before the data ends.
    #[error("milter command {}: its {field} does not end with a NUL byte", command_label(*.command))]
    Unterminated {
        /// The command byte.
        command: u8,
        /// The field, e.g. `"header value"`.
        field: &'static str,
    },
    /// Bytes after the last field of a command (or any data on a command that has none).
    #[error("milter command {} has {bytes} bytes after its last field", command_label(*.command))]
    TrailingData {
        /// The command byte.
        command: u8,
        /// How many bytes are left over.
        bytes: usize,
    },
    /// A [`Connect`](crate::Command::Connect) with an address family other than `4`, `6`, `L`
    /// and `U`.
    #[error("milter connect with unknown address family {}", shown_byte(*.family))]
    UnknownFamily {
        /// The family byte.
        family: u8,
    },
    /// A [`Macros`](crate::Command::Macros) packet with an odd number of strings: the last name
    /// has no value.
    #[error("milter macros for stage {}: `{name}` has no value", shown_byte(*.stage))]
    MacroWithoutValue {
        /// The stage byte.
        stage: u8,
        /// The name without a value, printable and cut to 80 characters.
        name: String,
    },
    /// A [`Mail`](crate::Command::Mail) or [`Rcpt`](crate::Command::Rcpt) without any argument
    /// (the address is the first one).
    #[error("milter command {} has no address", command_label(*.command))]
    MissingArgument {
        /// The command byte.
        command: u8,
    },
}

/// Why a [`Response`](crate::Response) or [`Command`](crate::Command) could not be encoded.
/// Nothing is written when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A [`ReplyCode`](crate::Response::ReplyCode) Postfix would not take, or that would not
    /// read as one SMTP reply line.
    #[error("milter reply `{text}` is refused: {reason}")]
    InvalidReply {
        /// The reply, printable and cut to 80 characters.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A header name that is not one or more printable ASCII characters other than `:`
    /// (RFC 5322 `ftext`).
    #[error("`{name}` is not a header name (printable ASCII without `:` or space)")]
    InvalidHeaderName {
        /// The name, printable and cut to 80 characters.
        name: String,
    },
    /// A header value holding NUL, CR, LF or another control character other than TAB.
    #[error("value of header `{name}` holds a control character: `{value}`")]
    InvalidHeaderValue {
        /// The header's name, printable and cut to 80 characters.
        name: String,
        /// The value, printable (control characters escaped) and cut to 80 characters.
        value: String,
    },
    /// A [`ChangeHeader`](crate::Response::ChangeHeader) with index 0; the index counts from 1.
    #[error("change of header `{name}` at index 0 (the index counts from 1)")]
    ZeroHeaderIndex {
        /// The header's name, printable and cut to 80 characters.
        name: String,
    },
    /// A [`Quarantine`](crate::Response::Quarantine) reason that is empty or holds a control
    /// character.
    #[error(
        "quarantine reason `{reason}` is refused (it must be non-empty, without control characters)"
    )]
    InvalidQuarantineReason {
        /// The reason, printable and cut to 80 characters.
        reason: String,
    },
    /// A string of a [`Command`](crate::Command) holding a NUL byte, which would end it early.
    #[error("milter command {}: its {field} holds a NUL byte", command_label(*.command))]
    NulInString {
        /// The command byte.
        command: u8,
        /// The field, e.g. `"helo name"`.
        field: &'static str,
    },
    /// A [`Mail`](crate::Command::Mail) or [`Rcpt`](crate::Command::Rcpt) without arguments.
    #[error("milter command {} needs at least one argument (the address)", command_label(*.command))]
    MissingArgument {
        /// The command byte.
        command: u8,
    },
    /// A [`Connect`](crate::Command::Connect) of family `U` with a port or address: the wire
    /// format has no room for them.
    #[error("milter connect of unknown family with a port or address (family `U` carries neither)")]
    AddressWithUnknownFamily,
    /// A packet longer than its 32-bit length field can say.
    #[error("milter packet of {bytes} bytes does not fit a 32-bit length")]
    PacketTooLarge {
        /// The packet's length (command byte and data).
        bytes: usize,
    },
}

/// Why the MTA's option negotiation cannot be answered. The connection should be closed (Postfix
/// then applies its `milter_default_action`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// The MTA offers a protocol version below 6.
    #[error("the MTA offers milter protocol version {offered}; version 6 is needed")]
    UnsupportedVersion {
        /// The version the MTA offered.
        offered: u32,
    },
    /// The MTA does not offer every action the filter needs.
    #[error("the MTA does not offer the milter actions {} (it offers {offered:#x})", action_names(*.missing))]
    MissingActions {
        /// The needed `SMFIF_*` bits that are not offered.
        missing: u32,
        /// Every bit the MTA offered.
        offered: u32,
    },
}

/// A byte for a message: `` `X` `` when printable ASCII, else `0xNN`.
pub(crate) fn shown_byte(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        format!("`{}`", char::from(byte))
    } else {
        format!("{byte:#04x}")
    }
}

/// A command code for a message: `` `L` (header)``.
pub(crate) fn command_label(code: u8) -> String {
    let name = match code {
        flags::SMFIC_ABORT => "abort",
        flags::SMFIC_BODY => "body",
        flags::SMFIC_CONNECT => "connect",
        flags::SMFIC_MACRO => "macros",
        flags::SMFIC_BODYEOB => "end of body",
        flags::SMFIC_HELO => "helo",
        flags::SMFIC_QUIT_NC => "quit, new connection",
        flags::SMFIC_HEADER => "header",
        flags::SMFIC_MAIL => "mail",
        flags::SMFIC_EOH => "end of headers",
        flags::SMFIC_OPTNEG => "option negotiation",
        flags::SMFIC_QUIT => "quit",
        flags::SMFIC_RCPT => "rcpt",
        flags::SMFIC_DATA => "data",
        flags::SMFIC_UNKNOWN => "unknown SMTP command",
        _ => return shown_byte(code),
    };
    format!("{} ({name})", shown_byte(code))
}

/// `SMFIF_*` bits by name: `SMFIF_CHGHDRS|SMFIF_QUARANTINE`.
fn action_names(bits: u32) -> String {
    const NAMES: [(u32, &str); 9] = [
        (flags::SMFIF_ADDHDRS, "SMFIF_ADDHDRS"),
        (flags::SMFIF_CHGBODY, "SMFIF_CHGBODY"),
        (flags::SMFIF_ADDRCPT, "SMFIF_ADDRCPT"),
        (flags::SMFIF_DELRCPT, "SMFIF_DELRCPT"),
        (flags::SMFIF_CHGHDRS, "SMFIF_CHGHDRS"),
        (flags::SMFIF_QUARANTINE, "SMFIF_QUARANTINE"),
        (flags::SMFIF_CHGFROM, "SMFIF_CHGFROM"),
        (flags::SMFIF_ADDRCPT_PAR, "SMFIF_ADDRCPT_PAR"),
        (flags::SMFIF_SETSYMLIST, "SMFIF_SETSYMLIST"),
    ];
    let mut names: Vec<String> = NAMES
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, name)| (*name).to_owned())
        .collect();
    let unnamed = NAMES.iter().fold(bits, |rest, (bit, _)| rest & !bit);
    if unnamed != 0 {
        names.push(format!("{unnamed:#x}"));
    }
    names.join("|")
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
            ("a\rb\nc\0", "a\\rb\\nc\\u{0}"),
            ("\u{1b}[2J", "\\u{1b}[2J"),
            ("\u{202e}moc.evil", "\\u{202e}moc.evil"),
            ("bücher", "bücher"),
        ];
        for (input, expected) in cases {
            assert_eq!(shown(input), *expected, "{input:?}");
        }
        assert_eq!(shown(&"x".repeat(80)), "x".repeat(80));
        assert_eq!(shown(&"x".repeat(81)), format!("{}…", "x".repeat(79)));
        assert_eq!(shown(&"\u{1}".repeat(100)).chars().count(), 80);
    }

    #[test]
    fn messages_name_the_input() {
        let cases: Vec<(Box<dyn std::error::Error>, &str)> = vec![
            (
                Box::new(ProtocolError::UnknownCommand { code: b'Z' }),
                "unknown milter command `Z`",
            ),
            (
                Box::new(ProtocolError::UnknownCommand { code: 0x1b }),
                "unknown milter command 0x1b",
            ),
            (
                Box::new(ProtocolError::Unterminated {
                    command: b'L',
                    field: "header value",
                }),
                "milter command `L` (header): its header value does not end with a NUL byte",
            ),
            (
                Box::new(ProtocolError::PacketTooLarge {
                    length: 1_048_577,
                    max: 1_048_576,
                }),
                "milter packet of 1048577 bytes announced, more than the cap of 1048576",
            ),
            (
                Box::new(NegotiationError::MissingActions {
                    missing: flags::SMFIF_CHGHDRS | flags::SMFIF_QUARANTINE | 0x8000,
                    offered: 0x0f,
                }),
                "the MTA does not offer the milter actions \
                 SMFIF_CHGHDRS|SMFIF_QUARANTINE|0x8000 (it offers 0xf)",
            ),
            (
                Box::new(EncodeError::InvalidHeaderValue {
                    name: "X-A".into(),
                    value: shown("a\r\nBcc: x"),
                }),
                "value of header `X-A` holds a control character: `a\\r\\nBcc: x`",
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(error.to_string(), expected);
        }
    }
}
