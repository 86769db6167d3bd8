//! What is known about a message when it is evaluated.

use std::net::IpAddr;

use allowgate_types::{CountryCode, Domain, EmailAddress};
use chrono::{DateTime, Utc};

use crate::message::MessageFacts;

/// Everything known about a message at the point of evaluation. Every value in it is already
/// normalised by its type (addresses, domains); the client IP is normalised once when an
/// evaluation starts (an IPv4-mapped IPv6 address counts as IPv4).
#[derive(Debug, Clone)]
pub struct Context {
    /// The time validity windows are checked against.
    pub now: DateTime<Utc>,
    /// The connecting client's IP.
    pub client_ip: IpAddr,
    /// The client's host name, only if forward-confirmed (reverse and forward DNS agree).
    pub client_host: Option<Domain>,
    /// The HELO/EHLO name (informational).
    pub helo: Option<String>,
    /// SMTP `MAIL FROM`; `None` for the null sender `<>`.
    pub mail_from: Option<EmailAddress>,
    /// Envelope recipients.
    pub recipients: Vec<EmailAddress>,
    /// Facts from the message, once its headers and body are known (milter, `check --message`).
    pub message: Option<MessageFacts>,
    /// GeoIP country of the client IP, when a GeoIP database is configured.
    pub country: Option<CountryCode>,
}

impl Context {
    /// A context with only the connecting IP and recipients set.
    pub fn new(now: DateTime<Utc>, client_ip: IpAddr, recipients: Vec<EmailAddress>) -> Context {
        Context {
            now,
            client_ip,
            client_host: None,
            helo: None,
            mail_from: None,
            recipients,
            message: None,
            country: None,
        }
    }
}
