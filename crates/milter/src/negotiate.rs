//! The option negotiation: what this filter asks of the MTA.

use crate::flags::{
    PROTOCOL_VERSION, SMFIF_ADDHDRS, SMFIF_CHGHDRS, SMFIF_QUARANTINE, SMFIP_NODATA, SMFIP_NOEOH,
    SMFIP_NOUNKNOWN, SMFIP_NR_BODY, SMFIP_NR_CONN, SMFIP_NR_DATA, SMFIP_NR_EOH, SMFIP_NR_HDR,
    SMFIP_NR_HELO, SMFIP_NR_MAIL, SMFIP_NR_RCPT, SMFIP_NR_UNKN,
};
use crate::{Command, NegotiationError, OptNeg};

/// The actions allowgate's filter needs: add and insert headers ([`SMFIF_ADDHDRS`], 0x01),
/// change and delete headers ([`SMFIF_CHGHDRS`], 0x10), quarantine ([`SMFIF_QUARANTINE`],
/// 0x20). Together 0x31. No body or envelope changes.
pub const NEEDED_ACTIONS: u32 = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE;

/// The protocol bits allowgate's filter wants (0xf73c0): "no reply" for every stage but `RCPT`,
/// and three commands it has no use for left out.
///
/// - `SMFIP_NODATA`, `SMFIP_NOUNKNOWN`, `SMFIP_NOEOH`: the `DATA` command, unknown SMTP
///   commands and the end of the headers are not sent (each would be one more packet per
///   message for Postfix to write and for the filter to read); every other stage is (connect,
///   `HELO`, `MAIL`, `RCPT`, headers, body);
/// - `SMFIP_NR_*` for connect, `HELO`, `MAIL`, `DATA`, unknown commands, each header, the end
///   of the headers and each body chunk: the filter decides only at `RCPT` (a recipient's
///   tenant may block the sender) and at the end of the message, so the MTA need not wait for
///   an answer anywhere else. Without them a message costs one round trip per header; with
///   them, two (`RCPT` and the end). [`needs_reply`] says which commands get an answer;
/// - no [`SMFIP_HDR_LEADSPC`](crate::flags::SMFIP_HDR_LEADSPC): header values arrive without
///   the space after the colon, and Postfix puts one back in the headers the filter adds;
/// - no `SMFIP_SKIP`, `SMFIP_RCPT_REJ`: not used.
///
/// Only the bits the MTA offers are taken (see [`negotiate`]).
pub const WANTED_PROTOCOL: u32 = SMFIP_NODATA
    | SMFIP_NOUNKNOWN
    | SMFIP_NOEOH
    | SMFIP_NR_CONN
    | SMFIP_NR_HELO
    | SMFIP_NR_MAIL
    | SMFIP_NR_DATA
    | SMFIP_NR_UNKN
    | SMFIP_NR_HDR
    | SMFIP_NR_EOH
    | SMFIP_NR_BODY;

/// Whether the filter answers `command` under the negotiated `protocol` bits: `false` for a
/// command whose `SMFIP_NR_*` bit was agreed (the MTA reads no answer to it: one sent anyway
/// would be taken as the answer to a later command), and for the commands that never get one
/// (macros, abort, quit).
///
/// ```
/// use allowgate_milter::{Command, flags, needs_reply};
/// let agreed = flags::SMFIP_NR_HDR;
/// let header = Command::Header { name: "From".into(), value: "a@b.example".into() };
/// assert!(!needs_reply(agreed, &header));
/// assert!(needs_reply(0, &header));
/// assert!(needs_reply(agreed, &Command::EndOfBody));
/// assert!(!needs_reply(agreed, &Command::Abort));
/// ```
pub fn needs_reply(protocol: u32, command: &Command) -> bool {
    if !command.needs_response() {
        return false;
    }
    let bit = match command {
        Command::Connect(_) => SMFIP_NR_CONN,
        Command::Helo(_) => SMFIP_NR_HELO,
        Command::Mail(_) => SMFIP_NR_MAIL,
        Command::Rcpt(_) => SMFIP_NR_RCPT,
        Command::Data => SMFIP_NR_DATA,
        Command::Header { .. } => SMFIP_NR_HDR,
        Command::EndOfHeaders => SMFIP_NR_EOH,
        Command::Body(_) => SMFIP_NR_BODY,
        Command::Unknown(_) => SMFIP_NR_UNKN,
        _ => return true,
    };
    protocol & bit == 0
}

/// The filter's answer to the MTA's option negotiation: version 6, [`NEEDED_ACTIONS`], and the
/// bits of [`WANTED_PROTOCOL`] the MTA offers.
///
/// Refused (close the connection; Postfix then applies `milter_default_action`): an MTA that
/// offers a version below 6 ([`NegotiationError::UnsupportedVersion`]) or does not offer every
/// needed action ([`NegotiationError::MissingActions`]). A higher version is answered with 6
/// (the MTA speaks the lower of the two). A "no reply" bit the MTA does not offer is simply
/// not taken: the filter then answers that command.
///
/// ```
/// use allowgate_milter::{OptNeg, WANTED_PROTOCOL, negotiate, flags};
/// // What Postfix 3.7 offers with `milter_protocol = 6`.
/// let postfix = OptNeg { version: 6, actions: 0x1ff, protocol: 0x1f_ffff };
/// assert_eq!(
///     negotiate(&postfix)?,
///     OptNeg {
///         version: 6,
///         actions: flags::SMFIF_ADDHDRS | flags::SMFIF_CHGHDRS | flags::SMFIF_QUARANTINE,
///         protocol: WANTED_PROTOCOL,
///     }
/// );
/// // An MTA that offers no "no reply" bit gets an answer to every command.
/// assert_eq!(negotiate(&OptNeg { protocol: 0, ..postfix })?.protocol, 0);
/// assert!(negotiate(&OptNeg { version: 2, ..postfix }).is_err());
/// # Ok::<(), allowgate_milter::NegotiationError>(())
/// ```
pub fn negotiate(offer: &OptNeg) -> Result<OptNeg, NegotiationError> {
    if offer.version < PROTOCOL_VERSION {
        return Err(NegotiationError::UnsupportedVersion {
            offered: offer.version,
        });
    }
    let missing = NEEDED_ACTIONS & !offer.actions;
    if missing != 0 {
        return Err(NegotiationError::MissingActions {
            missing,
            offered: offer.actions,
        });
    }
    Ok(OptNeg {
        version: PROTOCOL_VERSION,
        actions: NEEDED_ACTIONS,
        protocol: WANTED_PROTOCOL & offer.protocol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags;

    #[test]
    fn answers_postfix_and_refuses_what_cannot_work() {
        let postfix = OptNeg {
            version: 6,
            actions: 0x1ff,
            protocol: 0x1f_ffff,
        };
        let ours = OptNeg {
            version: 6,
            actions: 0x31,
            protocol: 0xf73c0,
        };
        assert_eq!(NEEDED_ACTIONS, 0x31);
        assert_eq!(WANTED_PROTOCOL, 0xf73c0);
        #[rustfmt::skip]
        let cases: &[(&str, OptNeg, Result<OptNeg, NegotiationError>)] = &[
            ("Postfix 3.7", postfix, Ok(ours)),
            ("a later version", OptNeg { version: 7, ..postfix }, Ok(ours)),
            ("exactly the needed actions, no protocol bits",
                OptNeg { version: 6, actions: 0x31, protocol: 0 }, Ok(OptNeg { protocol: 0, ..ours })),
            ("only some no-reply bits: those are taken",
                OptNeg { protocol: flags::SMFIP_NR_HDR | flags::SMFIP_NR_RCPT | flags::SMFIP_NOBODY, ..postfix },
                Ok(OptNeg { protocol: flags::SMFIP_NR_HDR, ..ours })),
            ("version 4", OptNeg { version: 4, ..postfix },
                Err(NegotiationError::UnsupportedVersion { offered: 4 })),
            ("version 0", OptNeg { version: 0, ..postfix },
                Err(NegotiationError::UnsupportedVersion { offered: 0 })),
            ("no quarantine", OptNeg { actions: 0x1ff & !flags::SMFIF_QUARANTINE, ..postfix },
                Err(NegotiationError::MissingActions { missing: 0x20, offered: 0x1df })),
            ("version 2 actions only", OptNeg { actions: 0x0f, ..postfix },
                Err(NegotiationError::MissingActions { missing: 0x30, offered: 0x0f })),
        ];
        for (name, offer, expected) in cases {
            assert_eq!(&negotiate(offer), expected, "{name}");
        }
    }

    #[test]
    fn exactly_the_agreed_no_reply_commands_go_unanswered() {
        let every = flags::SMFIP_NOREPLY_MASK;
        #[rustfmt::skip]
        let cases: Vec<(Command, bool, bool)> = vec![
            // (command, answered with no bit agreed, answered with every bit agreed)
            (Command::OptNeg(OptNeg { version: 6, actions: 0, protocol: 0 }), true, true),
            (Command::Macros { stage: b'C', pairs: vec![] }, false, false),
            (Command::Connect(crate::Connect {
                hostname: "h".into(), family: crate::Family::Inet, port: 25, address: "192.0.2.1".into(),
            }), true, false),
            (Command::Helo("h".into()), true, false),
            (Command::Mail(vec!["<a@b>".into()]), true, false),
            (Command::Rcpt(vec!["<a@b>".into()]), true, false),
            (Command::Data, true, false),
            (Command::Header { name: "From".into(), value: "a@b".into() }, true, false),
            (Command::EndOfHeaders, true, false),
            (Command::Body(b"x".to_vec()), true, false),
            (Command::Unknown("X".into()), true, false),
            (Command::EndOfBody, true, true),
            (Command::Abort, false, false),
            (Command::Quit, false, false),
            (Command::QuitNewConnection, false, false),
        ];
        for (command, none, all) in cases {
            assert_eq!(needs_reply(0, &command), none, "{command:?} with no bit");
            assert_eq!(
                needs_reply(every, &command),
                all,
                "{command:?} with every bit"
            );
        }
        // What allowgate agrees with Postfix: RCPT is still answered.
        assert!(needs_reply(
            WANTED_PROTOCOL,
            &Command::Rcpt(vec!["<a@b>".into()])
        ));
    }
}
