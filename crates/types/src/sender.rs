//! Where a sender address was found.

use std::fmt;

/// The places a sender address is read from, in the allow-side priority order (seed 003).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SenderSource {
    /// SMTP `MAIL FROM`.
    MailFrom,
    /// `Return-Path:`.
    ReturnPath,
    /// `X-Env-Sender:`.
    XEnvSender,
    /// `From:`.
    From,
    /// `Sender:`.
    Sender,
    /// `X-Apparently-From:`.
    XApparentlyFrom,
}

impl SenderSource {
    /// Every source, highest priority first.
    pub const PRIORITY: &'static [SenderSource] = &[
        SenderSource::MailFrom,
        SenderSource::ReturnPath,
        SenderSource::XEnvSender,
        SenderSource::From,
        SenderSource::Sender,
        SenderSource::XApparentlyFrom,
    ];

    /// The header name, or `MAIL FROM`.
    pub fn as_str(self) -> &'static str {
        match self {
            SenderSource::MailFrom => "MAIL FROM",
            SenderSource::ReturnPath => "Return-Path",
            SenderSource::XEnvSender => "X-Env-Sender",
            SenderSource::From => "From",
            SenderSource::Sender => "Sender",
            SenderSource::XApparentlyFrom => "X-Apparently-From",
        }
    }
}

impl fmt::Display for SenderSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
