//! The option negotiation: what this filter asks of the MTA.

use crate::flags::{PROTOCOL_VERSION, SMFIF_ADDHDRS, SMFIF_CHGHDRS, SMFIF_QUARANTINE};
use crate::{NegotiationError, OptNeg};

/// The actions allowgate's filter needs: add and insert headers ([`SMFIF_ADDHDRS`], 0x01),
/// change and delete headers ([`SMFIF_CHGHDRS`], 0x10), quarantine ([`SMFIF_QUARANTINE`],
/// 0x20). Together 0x31. No body or envelope changes.
pub const NEEDED_ACTIONS: u32 = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE;

/// The protocol bits allowgate's filter wants: none (0).
///
/// - no `SMFIP_NO*` bit: every stage is sent (connect, `HELO`, `MAIL`, `RCPT`, `DATA`,
///   headers, end of headers, body, unknown commands);
/// - no `SMFIP_NR_*` bit: the filter answers every command, so the MTA waits for each answer
///   and a decision can come at any stage (the price, one round trip per header and body chunk,
///   is small next to the content checks; `SMFIP_NR_HDR` would be the one to add if it shows);
/// - no [`SMFIP_HDR_LEADSPC`](crate::flags::SMFIP_HDR_LEADSPC): header values arrive without
///   the space after the colon, and Postfix puts one back in the headers the filter adds;
/// - no `SMFIP_SKIP`, `SMFIP_RCPT_REJ`: not used.
pub const WANTED_PROTOCOL: u32 = 0;

/// The filter's answer to the MTA's option negotiation: version 6, [`NEEDED_ACTIONS`],
/// [`WANTED_PROTOCOL`].
///
/// Refused (close the connection; Postfix then applies `milter_default_action`): an MTA that
/// offers a version below 6 ([`NegotiationError::UnsupportedVersion`]) or does not offer every
/// needed action ([`NegotiationError::MissingActions`]). A higher version is answered with 6
/// (the MTA speaks the lower of the two). The MTA's protocol bits need no check: the filter
/// asks for none of them.
///
/// ```
/// use allowgate_milter::{OptNeg, negotiate, flags};
/// // What Postfix 3.7 offers with `milter_protocol = 6`.
/// let postfix = OptNeg { version: 6, actions: 0x1ff, protocol: 0x1f_ffff };
/// assert_eq!(
///     negotiate(&postfix)?,
///     OptNeg {
///         version: 6,
///         actions: flags::SMFIF_ADDHDRS | flags::SMFIF_CHGHDRS | flags::SMFIF_QUARANTINE,
///         protocol: 0,
///     }
/// );
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
        protocol: WANTED_PROTOCOL,
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
            protocol: 0,
        };
        assert_eq!(NEEDED_ACTIONS, 0x31);
        #[rustfmt::skip]
        let cases: &[(&str, OptNeg, Result<OptNeg, NegotiationError>)] = &[
            ("Postfix 3.7", postfix, Ok(ours)),
            ("a later version", OptNeg { version: 7, ..postfix }, Ok(ours)),
            ("exactly the needed actions, no protocol bits",
                OptNeg { version: 6, actions: 0x31, protocol: 0 }, Ok(ours)),
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
}
