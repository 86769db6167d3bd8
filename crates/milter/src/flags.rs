//! The protocol's numbers, as sendmail's `libmilter/mfdef.h` and `mfapi.h` (8.14+) and
//! Postfix's `src/milter/milter8.c` define them.
//!
//! Two bit sets are exchanged in the option negotiation ([`OptNeg`](crate::OptNeg)):
//!
//! - **actions** (`SMFIF_*`): what the filter may do to a message at end of body. The MTA
//!   offers the ones it supports (Postfix 3.7 offers all nine, `0x1FF`); the filter answers with
//!   the ones it needs, a subset (Postfix drops the connection otherwise).
//! - **protocol** (`SMFIP_*`): which commands the MTA may leave out (`SMFIP_NO*`), which
//!   commands the filter will not answer (`SMFIP_NR_*`), and a few switches. The MTA offers the
//!   bits it understands (Postfix 3.7 with `milter_protocol = 6`: `0x1FFFFF`, all of them); the
//!   filter answers with the ones it wants set.

/// The milter protocol version this crate speaks (`SMFI_PROT_VERSION`): 6, sendmail 8.14's,
/// Postfix's since 2.6 (`milter_protocol = 6`, its default).
pub const PROTOCOL_VERSION: u32 = 6;

/// Body chunk size (`MILTER_CHUNK_SIZE`): the MTA sends the body in [`Body`](crate::Command::Body)
/// chunks of at most this many bytes (Postfix: exactly this many, then the rest).
pub const MILTER_CHUNK_SIZE: usize = 65_535;

// --- actions (SMFIF_*): what the filter may do at end of body ------------------------------

/// `SMFIF_ADDHDRS` (0x01): add headers ([`AddHeader`](crate::Response::AddHeader)) and insert
/// them ([`InsertHeader`](crate::Response::InsertHeader)).
pub const SMFIF_ADDHDRS: u32 = 0x0000_0001;
/// `SMFIF_CHGBODY` (0x02): replace the body.
pub const SMFIF_CHGBODY: u32 = 0x0000_0002;
/// `SMFIF_ADDRCPT` (0x04): add recipients.
pub const SMFIF_ADDRCPT: u32 = 0x0000_0004;
/// `SMFIF_DELRCPT` (0x08): delete recipients.
pub const SMFIF_DELRCPT: u32 = 0x0000_0008;
/// `SMFIF_CHGHDRS` (0x10): change and delete headers
/// ([`ChangeHeader`](crate::Response::ChangeHeader)).
pub const SMFIF_CHGHDRS: u32 = 0x0000_0010;
/// `SMFIF_QUARANTINE` (0x20): quarantine the message ([`Quarantine`](crate::Response::Quarantine);
/// Postfix puts it on its hold queue).
pub const SMFIF_QUARANTINE: u32 = 0x0000_0020;
/// `SMFIF_CHGFROM` (0x40): change the envelope sender.
pub const SMFIF_CHGFROM: u32 = 0x0000_0040;
/// `SMFIF_ADDRCPT_PAR` (0x80): add recipients with ESMTP arguments.
pub const SMFIF_ADDRCPT_PAR: u32 = 0x0000_0080;
/// `SMFIF_SETSYMLIST` (0x100): send, in the negotiation reply, the macros wanted per stage.
pub const SMFIF_SETSYMLIST: u32 = 0x0000_0100;

// --- protocol (SMFIP_*): commands left out, replies left out, switches ----------------------

/// `SMFIP_NOCONNECT` (bit 0): the MTA should not send [`Connect`](crate::Command::Connect).
pub const SMFIP_NOCONNECT: u32 = 0x0000_0001;
/// `SMFIP_NOHELO` (bit 1): no [`Helo`](crate::Command::Helo).
pub const SMFIP_NOHELO: u32 = 0x0000_0002;
/// `SMFIP_NOMAIL` (bit 2): no [`Mail`](crate::Command::Mail).
pub const SMFIP_NOMAIL: u32 = 0x0000_0004;
/// `SMFIP_NORCPT` (bit 3): no [`Rcpt`](crate::Command::Rcpt).
pub const SMFIP_NORCPT: u32 = 0x0000_0008;
/// `SMFIP_NOBODY` (bit 4): no [`Body`](crate::Command::Body) chunks.
pub const SMFIP_NOBODY: u32 = 0x0000_0010;
/// `SMFIP_NOHDRS` (bit 5): no [`Header`](crate::Command::Header)s.
pub const SMFIP_NOHDRS: u32 = 0x0000_0020;
/// `SMFIP_NOEOH` (bit 6): no [`EndOfHeaders`](crate::Command::EndOfHeaders).
pub const SMFIP_NOEOH: u32 = 0x0000_0040;
/// `SMFIP_NR_HDR` (bit 7, also `SMFIP_NOHREPL`): the filter sends no reply to a header.
pub const SMFIP_NR_HDR: u32 = 0x0000_0080;
/// `SMFIP_NOUNKNOWN` (bit 8): no [`Unknown`](crate::Command::Unknown).
pub const SMFIP_NOUNKNOWN: u32 = 0x0000_0100;
/// `SMFIP_NODATA` (bit 9): no [`Data`](crate::Command::Data).
pub const SMFIP_NODATA: u32 = 0x0000_0200;
/// `SMFIP_SKIP` (bit 10): the MTA understands the `SMFIR_SKIP` reply.
pub const SMFIP_SKIP: u32 = 0x0000_0400;
/// `SMFIP_RCPT_REJ` (bit 11): the MTA should also send recipients it rejected itself.
pub const SMFIP_RCPT_REJ: u32 = 0x0000_0800;
/// `SMFIP_NR_CONN` (bit 12): no reply to [`Connect`](crate::Command::Connect).
pub const SMFIP_NR_CONN: u32 = 0x0000_1000;
/// `SMFIP_NR_HELO` (bit 13): no reply to [`Helo`](crate::Command::Helo).
pub const SMFIP_NR_HELO: u32 = 0x0000_2000;
/// `SMFIP_NR_MAIL` (bit 14): no reply to [`Mail`](crate::Command::Mail).
pub const SMFIP_NR_MAIL: u32 = 0x0000_4000;
/// `SMFIP_NR_RCPT` (bit 15): no reply to [`Rcpt`](crate::Command::Rcpt).
pub const SMFIP_NR_RCPT: u32 = 0x0000_8000;
/// `SMFIP_NR_DATA` (bit 16): no reply to [`Data`](crate::Command::Data).
pub const SMFIP_NR_DATA: u32 = 0x0001_0000;
/// `SMFIP_NR_UNKN` (bit 17): no reply to [`Unknown`](crate::Command::Unknown).
pub const SMFIP_NR_UNKN: u32 = 0x0002_0000;
/// `SMFIP_NR_EOH` (bit 18): no reply to [`EndOfHeaders`](crate::Command::EndOfHeaders).
pub const SMFIP_NR_EOH: u32 = 0x0004_0000;
/// `SMFIP_NR_BODY` (bit 19): no reply to a [`Body`](crate::Command::Body) chunk.
pub const SMFIP_NR_BODY: u32 = 0x0008_0000;
/// `SMFIP_HDR_LEADSPC` (bit 20): header values keep the space after the colon, both ways.
/// Off (what [`negotiate`](crate::negotiate) asks for): Postfix removes one space after the
/// colon from each [`Header`](crate::Command::Header) value it sends, and puts one back
/// between name and value of each header the filter adds or changes.
pub const SMFIP_HDR_LEADSPC: u32 = 0x0010_0000;
/// `SMFIP_MDS_256K` (bit 28): sendmail's larger data size (256 KiB); Postfix does not offer it.
pub const SMFIP_MDS_256K: u32 = 0x1000_0000;
/// `SMFIP_MDS_1M` (bit 29): sendmail's larger data size (1 MiB); Postfix does not offer it.
pub const SMFIP_MDS_1M: u32 = 0x2000_0000;

/// Every `SMFIP_NO*` bit: commands the MTA may leave out.
pub const SMFIP_NOSEND_MASK: u32 = SMFIP_NOCONNECT
    | SMFIP_NOHELO
    | SMFIP_NOMAIL
    | SMFIP_NORCPT
    | SMFIP_NOBODY
    | SMFIP_NOHDRS
    | SMFIP_NOEOH
    | SMFIP_NOUNKNOWN
    | SMFIP_NODATA;

/// Every `SMFIP_NR_*` bit: commands the filter may leave unanswered.
pub const SMFIP_NOREPLY_MASK: u32 = SMFIP_NR_CONN
    | SMFIP_NR_HELO
    | SMFIP_NR_MAIL
    | SMFIP_NR_RCPT
    | SMFIP_NR_DATA
    | SMFIP_NR_UNKN
    | SMFIP_NR_HDR
    | SMFIP_NR_EOH
    | SMFIP_NR_BODY;

// --- address families of Connect (SMFIA_*) -------------------------------------------------

/// `SMFIA_INET` (`'4'`): an IPv4 client.
pub const SMFIA_INET: u8 = b'4';
/// `SMFIA_INET6` (`'6'`): an IPv6 client.
pub const SMFIA_INET6: u8 = b'6';
/// `SMFIA_UNIX` (`'L'`): a local (Unix-domain socket) client.
pub const SMFIA_UNIX: u8 = b'L';
/// `SMFIA_UNKNOWN` (`'U'`): no address known (no port or address follows).
pub const SMFIA_UNKNOWN: u8 = b'U';

// --- command codes (SMFIC_*), MTA → filter --------------------------------------------------

/// `SMFIC_ABORT` (`'A'`): [`Abort`](crate::Command::Abort).
pub const SMFIC_ABORT: u8 = b'A';
/// `SMFIC_BODY` (`'B'`): [`Body`](crate::Command::Body).
pub const SMFIC_BODY: u8 = b'B';
/// `SMFIC_CONNECT` (`'C'`): [`Connect`](crate::Command::Connect).
pub const SMFIC_CONNECT: u8 = b'C';
/// `SMFIC_MACRO` (`'D'`): [`Macros`](crate::Command::Macros).
pub const SMFIC_MACRO: u8 = b'D';
/// `SMFIC_BODYEOB` (`'E'`): [`EndOfBody`](crate::Command::EndOfBody).
pub const SMFIC_BODYEOB: u8 = b'E';
/// `SMFIC_HELO` (`'H'`): [`Helo`](crate::Command::Helo).
pub const SMFIC_HELO: u8 = b'H';
/// `SMFIC_QUIT_NC` (`'K'`): [`QuitNewConnection`](crate::Command::QuitNewConnection).
pub const SMFIC_QUIT_NC: u8 = b'K';
/// `SMFIC_HEADER` (`'L'`): [`Header`](crate::Command::Header).
pub const SMFIC_HEADER: u8 = b'L';
/// `SMFIC_MAIL` (`'M'`): [`Mail`](crate::Command::Mail).
pub const SMFIC_MAIL: u8 = b'M';
/// `SMFIC_EOH` (`'N'`): [`EndOfHeaders`](crate::Command::EndOfHeaders).
pub const SMFIC_EOH: u8 = b'N';
/// `SMFIC_OPTNEG` (`'O'`): [`OptNeg`](crate::Command::OptNeg).
pub const SMFIC_OPTNEG: u8 = b'O';
/// `SMFIC_QUIT` (`'Q'`): [`Quit`](crate::Command::Quit).
pub const SMFIC_QUIT: u8 = b'Q';
/// `SMFIC_RCPT` (`'R'`): [`Rcpt`](crate::Command::Rcpt).
pub const SMFIC_RCPT: u8 = b'R';
/// `SMFIC_DATA` (`'T'`): [`Data`](crate::Command::Data).
pub const SMFIC_DATA: u8 = b'T';
/// `SMFIC_UNKNOWN` (`'U'`): [`Unknown`](crate::Command::Unknown).
pub const SMFIC_UNKNOWN: u8 = b'U';

// --- response codes (SMFIR_*), filter → MTA -------------------------------------------------

/// `SMFIR_ACCEPT` (`'a'`): [`Accept`](crate::Response::Accept).
pub const SMFIR_ACCEPT: u8 = b'a';
/// `SMFIR_CONTINUE` (`'c'`): [`Continue`](crate::Response::Continue).
pub const SMFIR_CONTINUE: u8 = b'c';
/// `SMFIR_DISCARD` (`'d'`): [`Discard`](crate::Response::Discard).
pub const SMFIR_DISCARD: u8 = b'd';
/// `SMFIR_ADDHEADER` (`'h'`): [`AddHeader`](crate::Response::AddHeader).
pub const SMFIR_ADDHEADER: u8 = b'h';
/// `SMFIR_INSHEADER` (`'i'`): [`InsertHeader`](crate::Response::InsertHeader).
pub const SMFIR_INSHEADER: u8 = b'i';
/// `SMFIR_CHGHEADER` (`'m'`): [`ChangeHeader`](crate::Response::ChangeHeader).
pub const SMFIR_CHGHEADER: u8 = b'm';
/// `SMFIR_PROGRESS` (`'p'`): [`Progress`](crate::Response::Progress).
pub const SMFIR_PROGRESS: u8 = b'p';
/// `SMFIR_QUARANTINE` (`'q'`): [`Quarantine`](crate::Response::Quarantine).
pub const SMFIR_QUARANTINE: u8 = b'q';
/// `SMFIR_REJECT` (`'r'`): [`Reject`](crate::Response::Reject).
pub const SMFIR_REJECT: u8 = b'r';
/// `SMFIR_TEMPFAIL` (`'t'`): [`Tempfail`](crate::Response::Tempfail).
pub const SMFIR_TEMPFAIL: u8 = b't';
/// `SMFIR_REPLYCODE` (`'y'`): [`ReplyCode`](crate::Response::ReplyCode).
pub const SMFIR_REPLYCODE: u8 = b'y';
