//! An evaluation request as `allowgate check` and `POST /api/v1/evaluate` take it: text
//! fields, validated together (every problem reported), then evaluated against a snapshot.

use allowgate_core::{CheckResults, Context, MessageFacts, Snapshot, Verdict, decide, exemptions};
use allowgate_types::{CountryCode, Domain, EmailAddress, parse_ip, parse_time, shown};
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// Most recipients in one request (Postfix's default `smtpd_recipient_limit` is 1000).
pub const MAX_RECIPIENTS: usize = 1000;
/// Largest message in one request.
pub const MAX_MESSAGE_BYTES: usize = allowgate_core::MAX_MESSAGE_BYTES;
/// Most authenticated domains in one request.
pub const MAX_AUTHENTICATED: usize = 64;
/// Longest HELO name accepted.
pub const MAX_HELO: usize = 255;

/// What to evaluate: the fields of DESIGN's `POST /api/v1/evaluate`, plus the test inputs
/// `check` offers until the network checks run (`country`, `authenticated`, `at`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    /// The connecting client's IP.
    pub ip: String,
    /// The HELO/EHLO name.
    #[serde(default)]
    pub helo: Option<String>,
    /// The client's forward-confirmed host name.
    #[serde(default)]
    pub host: Option<String>,
    /// SMTP `MAIL FROM`; empty or `<>` for the null sender.
    #[serde(default)]
    pub mail_from: Option<String>,
    /// Envelope recipients.
    #[serde(default)]
    pub rcpt: Vec<String>,
    /// The message (RFC 5322 text): header senders, `Received:` walk, body lists.
    #[serde(default)]
    pub message: Option<String>,
    /// The message as raw bytes (the CLI reads files that need not be UTF-8); used instead of
    /// `message` when set.
    #[serde(skip)]
    pub raw_message: Option<Vec<u8>>,
    /// The client's GeoIP country (until a GeoIP database is configured).
    #[serde(default)]
    pub country: Option<String>,
    /// Sender domains to treat as authenticated (aligned SPF/DKIM pass or DMARC pass), until
    /// sender authentication runs.
    #[serde(default)]
    pub authenticated: Vec<String>,
    /// Evaluate at this time instead of now (RFC 3339 or `YYYY-MM-DD`).
    #[serde(default)]
    pub at: Option<String>,
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// The field (`ip`, `rcpt[2]`, …).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a request was refused: every invalid field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid request: {}", .0.iter().map(|e| format!("{}: {}", e.field, e.reason)).collect::<Vec<_>>().join("; "))]
pub struct InvalidRequest(pub Vec<FieldError>);

impl EvaluateRequest {
    /// Validate every field into a [`Context`] (and the check results the test inputs stand
    /// for), reporting every invalid field.
    pub fn context(&self, now: DateTime<Utc>) -> Result<(Context, CheckResults), InvalidRequest> {
        let mut errors = Vec::new();
        let mut bad = |field: &str, reason: String| {
            errors.push(FieldError {
                field: field.to_string(),
                reason,
            })
        };
        let ip = parse_ip(&self.ip)
            .map_err(|e| bad("ip", e.to_string()))
            .ok();
        let now = match self.at.as_deref().map(parse_time).transpose() {
            Ok(at) => at.unwrap_or(now),
            Err(e) => {
                bad("at", e.to_string());
                now
            }
        };
        let helo = match &self.helo {
            Some(h) if h.chars().count() > MAX_HELO || h.chars().any(char::is_control) => {
                bad(
                    "helo",
                    format!(
                        "`{}`: at most {MAX_HELO} characters, no control characters",
                        shown(h, 80)
                    ),
                );
                None
            }
            other => other.clone(),
        };
        // As seen in mail: a name with an invalid IDNA label still meets its parents' entries.
        let host = match self
            .host
            .as_deref()
            .map(Domain::parse_from_mail)
            .transpose()
        {
            Ok(h) => h,
            Err(e) => {
                bad("host", e.to_string());
                None
            }
        };
        let mail_from = match self.mail_from.as_deref().map(str::trim) {
            None | Some("") | Some("<>") => None,
            Some(m) => EmailAddress::parse(m)
                .map_err(|e| bad("mail_from", e.to_string()))
                .ok(),
        };
        if self.rcpt.len() > MAX_RECIPIENTS {
            bad(
                "rcpt",
                format!("{} recipients; at most {MAX_RECIPIENTS}", self.rcpt.len()),
            );
        }
        let mut recipients = Vec::with_capacity(self.rcpt.len().min(MAX_RECIPIENTS));
        for (i, r) in self.rcpt.iter().take(MAX_RECIPIENTS).enumerate() {
            match EmailAddress::parse(r) {
                Ok(a) => recipients.push(a),
                Err(e) => bad(&format!("rcpt[{i}]"), e.to_string()),
            }
        }
        let raw = self
            .raw_message
            .as_deref()
            .or(self.message.as_deref().map(str::as_bytes));
        let message = match raw {
            Some(raw) if raw.len() > MAX_MESSAGE_BYTES => {
                bad(
                    "message",
                    format!("{} bytes; at most {MAX_MESSAGE_BYTES}", raw.len()),
                );
                None
            }
            Some(raw) => Some(MessageFacts::parse(raw)),
            None => None,
        };
        let country = match self.country.as_deref().map(CountryCode::parse).transpose() {
            Ok(c) => c,
            Err(e) => {
                bad("country", e.to_string());
                None
            }
        };
        if self.authenticated.len() > MAX_AUTHENTICATED {
            bad(
                "authenticated",
                format!(
                    "{} domains; at most {MAX_AUTHENTICATED}",
                    self.authenticated.len()
                ),
            );
        }
        let mut authenticated = Vec::new();
        for (i, d) in self
            .authenticated
            .iter()
            .take(MAX_AUTHENTICATED)
            .enumerate()
        {
            match Domain::parse(d) {
                Ok(d) => authenticated.push(d),
                Err(e) => bad(&format!("authenticated[{i}]"), e.to_string()),
            }
        }
        let (Some(client_ip), true) = (ip, errors.is_empty()) else {
            return Err(InvalidRequest(errors));
        };
        let mut results = CheckResults::new();
        if !authenticated.is_empty() {
            results.set_authenticated(authenticated);
        }
        let ctx = Context {
            now,
            client_ip,
            client_host: host,
            helo,
            mail_from,
            recipients,
            message,
            country,
        };
        Ok((ctx, results))
    }

    /// Validate and evaluate against `snapshot` at `now` (or at `at`): the whole explanation.
    pub fn evaluate(
        &self,
        snapshot: &Snapshot,
        now: DateTime<Utc>,
    ) -> Result<Verdict, InvalidRequest> {
        let (ctx, results) = self.context(now)?;
        let found = exemptions(snapshot, &ctx);
        Ok(decide(&found, &results).verdict())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_invalid_field_is_reported() {
        let request = EvaluateRequest {
            ip: "192.0.2.300".into(),
            host: Some("bad host".into()),
            mail_from: Some("nobody".into()),
            rcpt: vec!["ok@example.com".into(), "broken".into()],
            country: Some("XX1".into()),
            at: Some("yesterday".into()),
            ..Default::default()
        };
        let Err(InvalidRequest(errors)) = request.context(Utc::now()) else {
            panic!("accepted");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["ip", "at", "host", "mail_from", "rcpt[1]", "country"]
        );
    }

    #[test]
    fn null_sender_and_json_form() {
        let request: EvaluateRequest = serde_json::from_str(
            r#"{"ip": "::ffff:192.0.2.7", "mail_from": "<>", "rcpt": ["b@example.com"], "message": "From: a@example.org\r\n\r\nx"}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (ctx, _) = request
            .context(Utc::now())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(ctx.mail_from.is_none());
        assert_eq!(ctx.message.map(|m| m.header_senders.len()), Some(1));
        assert!(serde_json::from_str::<EvaluateRequest>(r#"{"ip": "x", "extra": 1}"#).is_err());
    }
}
